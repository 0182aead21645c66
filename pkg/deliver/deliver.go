// Package deliver performs one HTTP delivery attempt and classifies its
// outcome. It knows nothing of queues, retries or signatures: the caller
// builds the signed request, and decides from the Outcome what happens
// next.
//
// The Client is tuned for a dispatcher talking to many unrelated hosts at
// high rates: redirects are never followed (a webhook URL that redirects
// is misconfigured, and following it would let a receiver point us at
// hosts the egress policy never saw), response bodies are read only as
// far as needed to keep connections reusable, and transparent gzip is
// off because nobody reads the body beyond its first KiB.
package deliver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/retry"
)

// Class names the kind of outcome of an attempt, for metrics, logs and
// retry decisions. The values are stable strings suitable as label values.
type Class string

// Outcome classes.
const (
	Success      Class = "none"         // 2xx
	Timeout      Class = "timeout"      // the attempt's deadline passed, or an I/O timeout
	Connection   Class = "connection"   // refused, reset, closed early, or any other transport failure
	DNS          Class = "dns"          // the host name did not resolve
	TLS          Class = "tls"          // handshake failed: certificate, protocol or alert
	Redirect     Class = "redirect"     // 3xx; never followed
	ClientError  Class = "client_error" // 4xx other than 410 and 429
	ServerError  Class = "server_error" // 5xx, and statuses outside 2xx-4xx
	Gone         Class = "gone"         // 410: the receiver asks us to stop
	RateLimited  Class = "rate_limited" // 429
	RequestError Class = "request"      // we could not build or send the request: bad URL, method or header
	Blocked      Class = "blocked"      // destination refused by egress policy (see ErrBlocked)
)

// Classes lists every class Do returns, for metrics whose series should
// exist before the first attempt of each.
var Classes = []Class{Success, Timeout, Connection, DNS, TLS, Redirect, ClientError, ServerError, Gone, RateLimited, RequestError, Blocked}

const (
	// DefaultTimeout bounds an attempt whose Request has no Timeout. It
	// also bounds connection setup (dial, TLS handshake) for every
	// attempt: net/http finishes dials in the background after the
	// request that started them gives up, so that a later request can use
	// the connection, and that background work needs its own limit.
	DefaultTimeout = 10 * time.Second
	// DefaultUserAgent is sent unless WithUserAgent or the request says
	// otherwise.
	DefaultUserAgent = "Herald/dev"
	// DefaultMaxBodyRead is how much of a response body is read, at most,
	// before the connection is given up on instead of reused.
	DefaultMaxBodyRead = 64 << 10
	// MaxBodyKeep is how much of the response body an Outcome keeps: enough
	// to show a receiver's error message, small enough to store per attempt.
	MaxBodyKeep = 1 << 10
)

// ErrBlocked is the error a dial hook (WithDialContext) wraps to refuse a
// destination; the attempt is then classified Blocked rather than
// Connection, so that operators see a policy decision, not an outage.
var ErrBlocked = errors.New("deliver: destination blocked by egress policy")

// Request is one attempt to send.
type Request struct {
	Method  string        // "" means POST
	URL     string        // absolute http or https URL
	Header  http.Header   // read, never modified
	Body    []byte        // read, never modified
	Timeout time.Duration // whole attempt: connect, TLS, headers, body; <= 0 means DefaultTimeout
}

// Outcome describes what happened to an attempt.
type Outcome struct {
	Status     int           // HTTP status; 0 when no response was received
	Latency    time.Duration // from sending until the status and the kept body were read
	Class      Class
	Err        string        // human-readable detail; never contains header values or the URL
	Body       []byte        // first MaxBodyKeep bytes of the response body
	RetryAfter time.Duration // the response's Retry-After for 429 and 503, else 0
}

// OK reports whether the receiver accepted the delivery (a 2xx status).
func (o Outcome) OK() bool { return o.Status >= 200 && o.Status <= 299 }

// Client sends attempts. It is safe for concurrent use; create one and
// share it so that connections are pooled.
type Client struct {
	hc          *http.Client
	ua          []string // shared, never modified
	maxBodyRead int64
	protocols   map[string]http.RoundTripper
}

// schemes routes a request to the RoundTripper of its URL's scheme
// (WithProtocol), or to the network.
type schemes struct {
	def http.RoundTripper
	by  map[string]http.RoundTripper
}

func (s schemes) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt, ok := s.by[req.URL.Scheme]; ok {
		return rt.RoundTrip(req)
	}
	return s.def.RoundTrip(req)
}

// UserAgent is the User-Agent the client sends when a Request sets none.
func (c *Client) UserAgent() string {
	if len(c.ua) == 0 {
		return ""
	}
	return c.ua[0]
}

// An Option configures a Client.
type Option func(*config)

type config struct {
	ua          string
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	proxy       func(*http.Request) (*url.URL, error)
	maxBodyRead int64
	rt          http.RoundTripper
	protocols   map[string]http.RoundTripper
}

// WithUserAgent sets the User-Agent sent when the Request does not set one.
func WithUserAgent(ua string) Option { return func(c *config) { c.ua = ua } }

// WithDialContext replaces the dialer. It is the hook for an egress (SSRF)
// guard: return an error wrapping ErrBlocked to refuse an address. The
// hook receives a context bounded by DefaultTimeout. Note that with a
// proxy (WithProxy) the hook sees the proxy's address, not the receiver's.
func WithDialContext(fn func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(c *config) { c.dial = fn }
}

// WithProxy sets the proxy selection function, as http.Transport.Proxy.
// By default no proxy is used, not even one from the environment, so that
// the dial hook sees real destinations.
func WithProxy(fn func(*http.Request) (*url.URL, error)) Option {
	return func(c *config) { c.proxy = fn }
}

// WithMaxBodyRead sets how many response body bytes are read, at most, so
// that the connection can be reused (default DefaultMaxBodyRead). Longer
// bodies are abandoned and their connection closed: reading megabytes
// from a chatty receiver costs more than a new connection.
func WithMaxBodyRead(n int64) Option {
	return func(c *config) { c.maxBodyRead = max(n, 0) }
}

// WithTransport replaces the tuned default transport, e.g. in tests.
// WithDialContext and WithProxy configure the default transport only and
// are ignored when this option is used.
func WithTransport(rt http.RoundTripper) Option { return func(c *config) { c.rt = rt } }

// WithProtocol sends requests whose URL has scheme through rt instead of
// the network, as http.Transport.RegisterProtocol does: `herald listen`
// endpoints (listen://) travel over NATS to a developer's CLI. rt is
// called with the request's context, so the attempt's timeout bounds it,
// and an error it returns is classified as any transport failure is; the
// egress policy, a dial hook, does not apply to it.
func WithProtocol(scheme string, rt http.RoundTripper) Option {
	return func(c *config) {
		if c.protocols == nil {
			c.protocols = map[string]http.RoundTripper{}
		}
		c.protocols[scheme] = rt
	}
}

// New returns a Client configured by opts.
func New(opts ...Option) *Client {
	cfg := config{ua: DefaultUserAgent, maxBodyRead: DefaultMaxBodyRead}
	for _, o := range opts {
		o(&cfg)
	}
	rt := cfg.rt
	if rt == nil {
		rt = newTransport(cfg.dial, cfg.proxy)
	}
	if len(cfg.protocols) > 0 {
		rt = schemes{def: rt, by: cfg.protocols}
	}
	return &Client{
		protocols: cfg.protocols,
		hc: &http.Client{
			Transport: rt,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		ua:          []string{cfg.ua},
		maxBodyRead: cfg.maxBodyRead,
	}
}

func newTransport(dial func(context.Context, string, string) (net.Conn, error), proxy func(*http.Request) (*url.URL, error)) *http.Transport {
	if dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	return &http.Transport{
		Proxy: proxy,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// The transport detaches dials from the request's deadline
			// (see DefaultTimeout); give them one of their own.
			ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
			defer cancel()
			return dial(ctx, network, addr)
		},
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    DefaultTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		DisableCompression:     true,
	}
}

// CloseIdleConnections closes pooled connections that are not in use,
// e.g. at shutdown.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Do makes one attempt and reports its outcome; failures are described in
// the Outcome, not returned. Redirects are not followed. If ctx is
// canceled (rather than timing out), the attempt fails with class
// Connection; callers shutting down should check ctx.Err() before
// recording the outcome as the receiver's fault.
func (c *Client) Do(ctx context.Context, r Request) Outcome {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := c.newRequest(ctx, r)
	if err != nil {
		return Outcome{Class: RequestError, Err: errText(err)}
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return Outcome{Latency: time.Since(start), Class: classify(err), Err: errText(err)}
	}
	defer resp.Body.Close()

	o := Outcome{Status: resp.StatusCode, Class: statusClass(resp.StatusCode)}
	body, err := readKept(resp.Body, resp.ContentLength)
	o.Latency = time.Since(start)
	o.Body = body
	if o.Class != Success {
		o.Err = statusText(resp.StatusCode)
	}
	if err != nil {
		// The receiver has already answered; the status decides the class.
		// A 2xx followed by a stalled body is still an acceptance.
		o.Err = joinErr(o.Err, "reading response body: "+errText(err))
		return o
	}
	if o.Status == http.StatusTooManyRequests || o.Status == http.StatusServiceUnavailable {
		if d, ok := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			o.RetryAfter = d
		}
	}
	c.drain(resp, int64(len(body)))
	return o
}

func (c *Client) newRequest(ctx context.Context, r Request) (*http.Request, error) {
	method := r.Method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader
	if len(r.Body) > 0 {
		body = bytes.NewReader(r.Body) // NewRequest sets ContentLength and GetBody
	}
	req, err := http.NewRequestWithContext(ctx, method, r.URL, body)
	if err != nil {
		return nil, err
	}
	if s := req.URL.Scheme; s != "http" && s != "https" && c.protocols[s] == nil {
		return nil, errors.New("unsupported URL scheme " + strconv.Quote(s))
	}
	if req.URL.Host == "" {
		return nil, errors.New("URL has no host")
	}
	switch _, hasUA := r.Header["User-Agent"]; {
	case len(r.Header) == 0:
		req.Header["User-Agent"] = c.ua
	case hasUA:
		req.Header = r.Header // neither Client nor Transport modify it
	default:
		h := make(http.Header, len(r.Header)+1)
		for k, v := range r.Header {
			h[k] = v
		}
		h["User-Agent"] = c.ua
		req.Header = h
	}
	return req, nil
}

// readKept reads the part of the body an Outcome keeps.
func readKept(body io.Reader, contentLength int64) ([]byte, error) {
	n := int64(MaxBodyKeep)
	if contentLength >= 0 {
		n = min(n, contentLength)
	}
	if n == 0 {
		return nil, nil
	}
	buf := make([]byte, n)
	m, err := io.ReadFull(body, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	if m == 0 {
		buf = nil
	}
	return buf[:m], err
}

// drain reads the rest of a body of modest size so that Close returns the
// connection to the pool; a body already known to be too long is left for
// Close to abandon with its connection.
func (c *Client) drain(resp *http.Response, read int64) {
	left := c.maxBodyRead - read
	if left <= 0 || resp.ContentLength > c.maxBodyRead {
		return
	}
	// One byte more than allowed: reaching EOF is what frees the connection.
	io.CopyN(io.Discard, resp.Body, left+1)
}

func statusClass(code int) Class {
	switch {
	case code >= 200 && code <= 299:
		return Success
	case code >= 300 && code <= 399:
		return Redirect
	case code == http.StatusGone:
		return Gone
	case code == http.StatusTooManyRequests:
		return RateLimited
	case code >= 400 && code <= 499:
		return ClientError
	default:
		return ServerError
	}
}

func statusText(code int) string {
	s := "status " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		s += " " + t
	}
	if code >= 300 && code <= 399 {
		s += " (redirects are not followed)"
	}
	return s
}

// classify maps a transport error to a Class. Order matters: a blocked or
// unresolvable destination is reported as such even when the error also
// counts as a timeout, and TLS handshake timeouts are timeouts.
func classify(err error) Class {
	if errors.Is(err, ErrBlocked) {
		return Blocked
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return DNS
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		return Timeout
	}
	if isTLS(err) {
		return TLS
	}
	if strings.Contains(err.Error(), "net/http: invalid header field") {
		return RequestError
	}
	return Connection
}

func isTLS(err error) bool {
	var (
		recordErr    tls.RecordHeaderError
		alertErr     tls.AlertError
		verifyErr    *tls.CertificateVerificationError
		unknownCA    x509.UnknownAuthorityError
		hostnameErr  x509.HostnameError
		invalidCert  x509.CertificateInvalidError
		systemRoots  x509.SystemRootsError
		constraint   x509.ConstraintViolationError
		unhandledExt x509.UnhandledCriticalExtension
	)
	return errors.As(err, &recordErr) || errors.As(err, &alertErr) || errors.As(err, &verifyErr) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostnameErr) || errors.As(err, &invalidCert) ||
		errors.As(err, &systemRoots) || errors.As(err, &constraint) || errors.As(err, &unhandledExt) ||
		strings.Contains(err.Error(), "tls: ") ||
		// net/http's rewording of a RecordHeaderError: https:// to a plain HTTP port.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// errText describes err without the request URL, which may carry secrets
// in its query; *url.Error would repeat it.
func errText(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
