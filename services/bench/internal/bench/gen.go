package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/natsauth"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Mode is how the generator hands events over.
type Mode string

// Modes.
const (
	// ModeHTTP POSTs events to Herald's /v1/events with the tenant's key.
	ModeHTTP Mode = "http"
	// ModeNATS publishes the event JSON straight to JetStream on
	// herald.events.<tenant>.<type> with Nats-Msg-Id <tenant>/<id>.
	ModeNATS Mode = "nats"
	// ModeDirect POSTs signed webhooks straight to a receiver, as Herald's
	// sender would: the baseline, this machine's limit for sending webhooks.
	ModeDirect Mode = "direct"
)

// Target is where one event goes; the generator spreads events over its
// targets in turn.
type Target struct {
	URL    string // ModeHTTP: Herald's base URL; ModeDirect: the webhook URL
	APIKey string // ModeHTTP: the tenant's API key
	Tenant string // ModeNATS: the tenant id (with its APIKey as the NATS token)
	Type   string // the event type
	Secret string // ModeDirect: the whsec_ secret to sign with
	Group  int    // for the ledger: which endpoints this event must reach
}

// SizeClass is a body size and its share of the events.
type SizeClass struct {
	Bytes  int `json:"bytes"`
	Weight int `json:"weight"`
}

// GenConfig configures a generator run. A run is bounded by Count and by
// Duration, whichever comes first; at least one must be set.
type GenConfig struct {
	Mode    Mode
	Targets []Target
	// Rate is the open-loop target in events/s: events are due at fixed
	// times whatever the answers, and lateness is reported. 0 is closed
	// loop: Concurrency producers each send as soon as the previous answer
	// came back (as fast as accepted).
	Rate float64
	// Concurrency is the number of producers (closed loop) or the most
	// requests in flight (open loop).
	Concurrency int
	Duration    time.Duration
	Count       int
	Sizes       []SizeClass // default: 1 KiB
	// IDPrefix starts every event id: <prefix>-<seq, 9 digits>.
	IDPrefix string
	// NATSURL is where ModeNATS publishes: as producers do, one connection
	// per tenant with the target's APIKey as the token (ConnectProducer).
	NATSURL string
	Timeout time.Duration // per request; default 30 s
	// OnResult, if set, hears every event's outcome (from many goroutines).
	OnResult func(seq int, r Result)
}

// Result is the outcome of one event.
type Result struct {
	Target    int
	Size      int // index in Sizes
	Status    int // HTTP status (ModeNATS: 202 on a PubAck, 503 on an error); 0: transport error
	Start     time.Time
	Ack       time.Time // when the answer arrived: the accepted time on the producer's clock
	Duplicate bool
	Detail    string // first bytes of a refusal
}

// Accepted reports whether the event was accepted (2xx).
func (r Result) Accepted() bool { return r.Status >= 200 && r.Status < 300 }

// GenSummary is what a generator run did.
type GenSummary struct {
	Mode           Mode              `json:"mode"`
	Rate           float64           `json:"rate,omitempty"`
	Concurrency    int               `json:"concurrency"`
	Sent           int64             `json:"sent"`
	Accepted       int64             `json:"accepted"`
	Duplicates     int64             `json:"duplicates,omitempty"`
	Refused        map[string]int64  `json:"refused,omitempty"`        // by status ("0" = transport error)
	RefusalDetail  map[string]string `json:"refusal_detail,omitempty"` // the first answer of each status
	ElapsedSeconds float64           `json:"elapsed_s"`
	AcceptedPerSec float64           `json:"accepted_per_s"`
	// ResponseMs is the time to the answer; in open loop from when the
	// event was due, so a stalled intake shows (no coordinated omission).
	ResponseMs Percentiles `json:"response_ms"`
	// Late counts open-loop events sent more than 10 ms after they were
	// due (all producers busy); MaxLateMs is the worst.
	Late      int64     `json:"late,omitempty"`
	MaxLateMs float64   `json:"max_late_ms,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
}

// EventID is the id of event seq under prefix.
func EventID(prefix string, seq int) string { return fmt.Sprintf("%s-%09d", prefix, seq) }

// ParseEventID returns the seq of an id made by EventID under prefix.
func ParseEventID(prefix, id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) < 2 || rest[0] != '-' {
		return 0, false
	}
	n, err := strconv.Atoi(rest[1:])
	return n, err == nil && n > 0
}

// NewHTTPClient returns a client for load: keep-alive connections for
// every producer, no compression, no proxy.
func NewHTTPClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns + 16,
			MaxIdleConnsPerHost: conns + 16,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type generator struct {
	cfg    GenConfig
	client *http.Client
	js     map[string]jetstream.JetStream // ModeNATS, by tenant
	blobs  [][]byte                       // data blob per size class, longest needed
	total  int                            // sum of weights
	signer []*sign.Signer

	mu       sync.Mutex
	resp     Histogram
	lateHist Histogram
	refused  map[string]int64
	detail   map[string]string
	sent     atomic.Int64
	accepted atomic.Int64
	dups     atomic.Int64
	late     atomic.Int64
	lastAck  atomic.Int64
}

// Generate runs a load and returns its summary. It returns early, with
// what was done, when ctx ends.
func Generate(ctx context.Context, cfg GenConfig) (GenSummary, error) {
	if len(cfg.Targets) == 0 {
		return GenSummary{}, errors.New("generate: no targets")
	}
	if cfg.Count <= 0 && cfg.Duration <= 0 {
		return GenSummary{}, errors.New("generate: set a count or a duration (or both): a load is always bounded")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = []SizeClass{{Bytes: 1024, Weight: 1}}
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "bench"
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeHTTP
	}
	g := &generator{cfg: cfg, refused: map[string]int64{}, detail: map[string]string{}}
	for _, sc := range cfg.Sizes {
		g.total += max(sc.Weight, 0)
		g.blobs = append(g.blobs, blob(sc.Bytes))
	}
	if g.total == 0 {
		return GenSummary{}, errors.New("generate: size weights are all zero")
	}
	switch cfg.Mode {
	case ModeHTTP, ModeDirect:
		g.client = NewHTTPClient(cfg.Concurrency, cfg.Timeout)
		defer g.client.CloseIdleConnections()
	case ModeNATS:
		if cfg.NATSURL == "" {
			return GenSummary{}, errors.New("generate: ModeNATS needs a NATS URL")
		}
		g.js = map[string]jetstream.JetStream{}
		for _, t := range cfg.Targets {
			if t.Tenant == "" || t.APIKey == "" {
				return GenSummary{}, errors.New("generate: ModeNATS needs each target's tenant id and API key")
			}
			if _, ok := g.js[t.Tenant]; ok {
				continue
			}
			nc, err := ConnectProducer(cfg.NATSURL, t.Tenant, t.APIKey)
			if err != nil {
				return GenSummary{}, fmt.Errorf("generate: connect as a producer of %s: %w", t.Tenant, err)
			}
			defer nc.Close()
			if g.js[t.Tenant], err = jetstream.New(nc); err != nil {
				return GenSummary{}, err
			}
		}
	default:
		return GenSummary{}, fmt.Errorf("generate: unknown mode %q", cfg.Mode)
	}
	if cfg.Mode == ModeDirect {
		for _, t := range cfg.Targets {
			s, err := sign.New(sign.Standard, t.Secret)
			if err != nil {
				return GenSummary{}, fmt.Errorf("generate: target %s: %w", t.URL, err)
			}
			g.signer = append(g.signer, s)
		}
	}

	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	start := time.Now()
	if cfg.Rate > 0 {
		g.openLoop(ctx, start)
	} else {
		g.closedLoop(ctx)
	}
	end := time.Now()
	if la := g.lastAck.Load(); la > 0 {
		end = time.Unix(0, la)
	}
	s := GenSummary{
		Mode: cfg.Mode, Rate: cfg.Rate, Concurrency: cfg.Concurrency,
		Sent: g.sent.Load(), Accepted: g.accepted.Load(), Duplicates: g.dups.Load(),
		Refused: g.refused, RefusalDetail: g.detail, Start: start, End: end,
		ResponseMs: g.resp.Summary(), Late: g.late.Load(), MaxLateMs: float64(g.lateHist.Max()) / 1000,
	}
	s.ElapsedSeconds = end.Sub(start).Seconds()
	if s.ElapsedSeconds > 0 {
		s.AcceptedPerSec = float64(s.Accepted) / s.ElapsedSeconds
	}
	if len(s.Refused) == 0 {
		s.Refused, s.RefusalDetail = nil, nil
	}
	return s, nil
}

func (g *generator) closedLoop(ctx context.Context) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range g.cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				seq := int(next.Add(1))
				if g.cfg.Count > 0 && seq > g.cfg.Count {
					return
				}
				now := time.Now()
				// The bound stops new events; one in flight finishes (the
				// client's timeout bounds it) rather than counting as failed.
				g.one(context.WithoutCancel(ctx), seq, now, now)
			}
		})
	}
	wg.Wait()
}

func (g *generator) openLoop(ctx context.Context, start time.Time) {
	slots := make(chan struct{}, g.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	interval := time.Duration(float64(time.Second) / g.cfg.Rate)
	for seq := 1; g.cfg.Count <= 0 || seq <= g.cfg.Count; seq++ {
		due := start.Add(time.Duration(seq-1) * interval)
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			<-slots
			return
		}
		now := time.Now()
		lag := now.Sub(due)
		if lag > 10*time.Millisecond {
			g.late.Add(1)
		}
		g.mu.Lock()
		g.lateHist.Record(lag)
		g.mu.Unlock()
		wg.Go(func() {
			defer func() { <-slots }()
			g.one(context.WithoutCancel(ctx), seq, due, now)
		})
	}
}

// one sends event seq; due is when it was due (open loop) or started.
func (g *generator) one(ctx context.Context, seq int, due, start time.Time) {
	ti := (seq - 1) % len(g.cfg.Targets)
	t := g.cfg.Targets[ti]
	size := g.sizeOf(seq)
	id := EventID(g.cfg.IDPrefix, seq)
	r := Result{Target: ti, Size: size, Start: start}
	g.sent.Add(1)
	switch g.cfg.Mode {
	case ModeHTTP:
		g.postEvent(ctx, t, id, size, &r)
	case ModeNATS:
		g.publish(ctx, t, id, size, &r)
	case ModeDirect:
		g.postWebhook(ctx, ti, t, id, size, &r)
	}
	if r.Ack.IsZero() {
		r.Ack = time.Now()
	}
	for ns := r.Ack.UnixNano(); ; {
		old := g.lastAck.Load()
		if old >= ns || g.lastAck.CompareAndSwap(old, ns) {
			break
		}
	}
	g.mu.Lock()
	g.resp.Record(r.Ack.Sub(due))
	if !r.Accepted() {
		k := strconv.Itoa(r.Status)
		g.refused[k]++
		if _, ok := g.detail[k]; !ok {
			g.detail[k] = r.Detail
		}
	}
	g.mu.Unlock()
	if r.Accepted() {
		g.accepted.Add(1)
		if r.Duplicate {
			g.dups.Add(1)
		}
	}
	if g.cfg.OnResult != nil {
		g.cfg.OnResult(seq, r)
	}
}

// sizeOf picks the size class of event seq: deterministic, spread by a
// hash so classes interleave.
func (g *generator) sizeOf(seq int) int {
	if len(g.cfg.Sizes) == 1 {
		return 0
	}
	x := uint64(seq) * 0x9E3779B97F4A7C15
	x ^= x >> 31
	r := int(x % uint64(g.total))
	for i, sc := range g.cfg.Sizes {
		if r < sc.Weight {
			return i
		}
		r -= sc.Weight
	}
	return len(g.cfg.Sizes) - 1
}

// blob returns n bytes of JSON-safe text.
func blob(n int) []byte {
	b := make([]byte, n)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range b {
		b[i] = alphabet[(i*7+i/36)%len(alphabet)]
	}
	return b
}

// eventBody is the producer's event, sized to the class: the body POSTed
// to /v1/events (or published to NATS) is Bytes long, give or take a few.
func (g *generator) eventBody(t Target, id string, size int) [][]byte {
	head := `{"id":"` + id + `","type":"` + t.Type + `","data":{"pad":"`
	tail := `"}}`
	n := max(g.cfg.Sizes[size].Bytes-len(head)-len(tail), 0)
	return [][]byte{[]byte(head), g.blobs[size][:min(n, len(g.blobs[size]))], []byte(tail)}
}

func join(parts [][]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// bodyReader serves parts without copying them into one buffer (5 MiB
// events stay shared).
func bodyReader(parts [][]byte) (io.Reader, int64, func() (io.ReadCloser, error)) {
	var n int64
	for _, p := range parts {
		n += int64(len(p))
	}
	mk := func() io.Reader {
		rs := make([]io.Reader, len(parts))
		for i, p := range parts {
			rs[i] = bytes.NewReader(p)
		}
		return io.MultiReader(rs...)
	}
	return mk(), n, func() (io.ReadCloser, error) { return io.NopCloser(mk()), nil }
}

func (g *generator) postEvent(ctx context.Context, t Target, id string, size int, r *Result) {
	body, n, getBody := bodyReader(g.eventBody(t, id, size))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(t.URL, "/")+"/v1/events", body)
	if err != nil {
		r.Detail = err.Error()
		return
	}
	req.ContentLength, req.GetBody = n, getBody
	req.Header.Set("Authorization", "Bearer "+t.APIKey)
	req.Header.Set("Content-Type", "application/json")
	g.do(req, r)
}

func (g *generator) postWebhook(ctx context.Context, ti int, t Target, id string, size int, r *Result) {
	now := time.Now()
	head := `{"type":"` + t.Type + `","timestamp":"` + now.UTC().Format(time.RFC3339Nano) + `","data":{"pad":"`
	tail := `"}}`
	n := max(g.cfg.Sizes[size].Bytes-len(head)-len(tail), 0)
	body := join([][]byte{[]byte(head), g.blobs[size][:min(n, len(g.blobs[size]))], []byte(tail)})
	// The headers Herald's sender sets (pkg/sender.Build), signed the same way.
	h := make(http.Header, 8)
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Herald/bench-baseline")
	h.Set(sign.HeaderID, id)
	h.Set(sign.HeaderTimestamp, sign.FormatTimestamp(now))
	h.Set("Herald-Attempt", "1")
	if err := g.signer[ti].Sign(h, sign.Message{ID: id, Timestamp: now, Body: body}); err != nil {
		r.Detail = err.Error()
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		r.Detail = err.Error()
		return
	}
	req.Header = h
	g.do(req, r)
}

var dupMark = []byte(`"duplicate":true`)

func (g *generator) do(req *http.Request, r *Result) {
	resp, err := g.client.Do(req)
	if err != nil {
		r.Ack = time.Now()
		r.Detail = err.Error()
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	r.Ack = time.Now()
	r.Status = resp.StatusCode
	if r.Accepted() {
		r.Duplicate = bytes.Contains(b, dupMark)
	} else {
		r.Detail = strings.TrimSpace(string(b[:min(len(b), 300)]))
	}
}

func (g *generator) publish(ctx context.Context, t Target, id string, size int, r *Result) {
	msg := &nats.Msg{Subject: bus.EventSubject(t.Tenant, t.Type), Data: join(g.eventBody(t, id, size))}
	pctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	ack, err := g.js[t.Tenant].PublishMsg(pctx, msg, jetstream.WithMsgID(t.Tenant+"/"+id), jetstream.WithExpectStream(bus.StreamEvents))
	r.Ack = time.Now()
	if err != nil {
		r.Status = http.StatusServiceUnavailable
		r.Detail = err.Error()
		return
	}
	r.Status = http.StatusAccepted
	r.Duplicate = ack.Duplicate
}

// ConnectNATS connects to NATS for reading the DLQ, with opts: Herald's own
// credentials for an all-in-one (Stack.NATSOptions).
func ConnectNATS(url string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append([]nats.Option{nats.Name("herald-bench"), nats.MaxReconnects(-1)}, opts...)...)
}

// ConnectProducer connects to NATS as a producer of tenant does: with one of
// its API keys as the token, and the inbox prefix its replies may use.
func ConnectProducer(url, tenant, apiKey string) (*nats.Conn, error) {
	return ConnectNATS(url, nats.Name("herald-bench-producer"), nats.Token(apiKey), nats.CustomInboxPrefix(natsauth.InboxPrefix(tenant)))
}
