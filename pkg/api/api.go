// Package api is Herald's HTTP API: event intake and the management API that
// a platform's settings page and its customers' scripts talk to. Every error
// is an RFC 9457 problem document; every body is read with a limit and
// decoded strictly; keys and tokens are compared in constant time and never
// logged.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/session"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/strictjson"
	"github.com/heraldhq/herald/pkg/trace"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/rs/zerolog"
)

// Store is the configuration store as the API uses it.
type Store interface {
	CreateTenant(ctx context.Context, name string) (store.Tenant, string, error)
	GetTenant(ctx context.Context, id string) (store.Tenant, error)
	ListTenants(ctx context.Context) ([]store.Tenant, error)
	RenameTenant(ctx context.Context, id, name string) (store.Tenant, error)
	DeleteTenant(ctx context.Context, id string) error
	CreateAPIKey(ctx context.Context, tenant string) (string, store.APIKey, error)
	APIKeys(ctx context.Context, tenant string) ([]store.APIKey, error)
	RevokeAPIKey(ctx context.Context, tenant, keyID string) error
	Authenticate(ctx context.Context, key string) (string, error)
	CreateEndpoint(ctx context.Context, tenant string, e store.Endpoint) (store.Endpoint, error)
	GetEndpoint(ctx context.Context, tenant, id string) (store.Endpoint, error)
	ListEndpoints(ctx context.Context, tenant string) ([]store.Endpoint, error)
	UpdateEndpoint(ctx context.Context, tenant, id string, change func(*store.Endpoint) error) (store.Endpoint, error)
	DeleteEndpoint(ctx context.Context, tenant, id string) error

	TenantsPage(ctx context.Context, after string, limit int) (store.Page[store.Tenant], error)
	EndpointsPage(ctx context.Context, tenant, after string, limit int) (store.Page[store.Endpoint], error)

	CreateEventType(ctx context.Context, tenant string, et store.EventType) (store.EventType, error)
	GetEventType(ctx context.Context, tenant, name string) (store.EventType, error)
	EventTypesPage(ctx context.Context, tenant, after string, limit int) (store.Page[store.EventType], error)
	UpdateEventType(ctx context.Context, tenant, name string, change func(*store.EventType) error) (store.EventType, error)
	DeleteEventType(ctx context.Context, tenant, name string) error
}

// History is the attempt history as the API uses it (package history).
type History interface {
	Attempts(ctx context.Context, tenant, endpoint string, q history.Query) (history.Page, error)
	Event(ctx context.Context, tenant, id string) (history.Event, error)
	// EventData reads an event's data, which Event leaves unread when it
	// is kept out of the event (a large body).
	EventData(ctx context.Context, ev history.Event) (json.RawMessage, error)
	// Record stores an attempt made by the API itself (a test send).
	Record(ctx context.Context, a *heraldv1.Attempt) error
	// Counts returns, per endpoint named, how its attempts since then went.
	Counts(ctx context.Context, tenant string, endpoints []string, since time.Time) (map[string]history.Counts, error)
}

// Publisher stores events.
type Publisher interface {
	Publish(ctx context.Context, tenant string, in event.Input) (ingest.Result, error)
}

// Invalidator is told of every endpoint change, so caches drop it at once.
type Invalidator interface {
	Invalidate(ctx context.Context, tenant string)
}

// Limits on request bodies.
const (
	// DefaultMaxEventBytes is the largest event data accepted (the "data"
	// value, as sent); the request body may add EventEnvelopeBytes of JSON
	// around it.
	DefaultMaxEventBytes = 5 << 20
	// EventEnvelopeBytes is the allowance for the rest of an event's JSON
	// (type, id, endpoint_id, whitespace) on top of the data limit.
	EventEnvelopeBytes = 64 << 10
	maxManagementBytes = 64 << 10
	maxURLLength       = 4096

	// MaxHeaderBytes is the most bytes of request line and header fields
	// the API takes; a larger request answers 431 with a problem document.
	MaxHeaderBytes = 32 << 10
	// ServerMaxHeaderBytes is the http.Server MaxHeaderBytes to serve the
	// API with. net/http refuses a request over its own limit before any
	// handler runs, with a plain-text 431 and a closed connection: set
	// above MaxHeaderBytes, it leaves requests up to four times the API's
	// limit to the API, which answers them with a problem document.
	ServerMaxHeaderBytes = 4 * MaxHeaderBytes
)

// Server serves the API.
type Server struct {
	store       Store
	pub         Publisher
	invalidator Invalidator
	adminToken  []byte
	maxEvent    int64
	log         zerolog.Logger
	mux         *http.ServeMux
	keys        keyCache
	history     History
	client      *deliver.Client
	urlCheck    func(ctx context.Context, rawURL string) error
	patterns    []string
	dlq         DeadLetters
	eventLimit  RateLimiter
	testLimit   RateLimiter
	endpoints   EndpointLimiter
	backlogs    Backlogs
	inflight    budget
	listener    Listener
	tracer      *trace.Tracer
	sessions    Sessions
	publicURL   string
}

// Option configures a Server.
type Option func(*Server)

// WithAdminToken sets the operator token that guards tenant management.
// Without one, those routes answer 401.
func WithAdminToken(t string) Option { return func(s *Server) { s.adminToken = []byte(t) } }

// WithTracer continues, in the span of each event stored, the trace a
// producer sends in the request's traceparent header (package trace); the
// Publisher records the span.
func WithTracer(t *trace.Tracer) Option { return func(s *Server) { s.tracer = t } }

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Server) { s.log = l } }

// WithInvalidator sets who hears of endpoint changes.
func WithInvalidator(i Invalidator) Option { return func(s *Server) { s.invalidator = i } }

// WithMaxEventBytes sets the largest event data accepted; the request body
// may be EventEnvelopeBytes larger.
func WithMaxEventBytes(n int64) Option { return func(s *Server) { s.maxEvent = n } }

// WithHistory sets the attempt history behind GET /v1/events/{id}, GET
// /v1/endpoints/{id}/attempts and the recording of test sends. Without it
// those routes answer 503.
func WithHistory(h History) Option { return func(s *Server) { s.history = h } }

// WithDeliverClient sets the HTTP client of test sends. Give it the
// senders' client (same user agent, same egress policy), so that a test
// that passes means real deliveries pass.
func WithDeliverClient(c *deliver.Client) Option { return func(s *Server) { s.client = c } }

// WithURLCheck sets the egress check of endpoint URLs (egress.Policy's
// CheckURL): POST and PATCH /v1/endpoints answer 422 on field "url" when
// it returns an error wrapping deliver.ErrBlocked. Without it, any URL of
// the right form is accepted; deliveries are still checked at connect time.
func WithURLCheck(fn func(ctx context.Context, rawURL string) error) Option {
	return func(s *Server) { s.urlCheck = fn }
}

// RateLimiter admits requests per key (pkg/ratelimit).
type RateLimiter interface {
	// Allow takes one request from key's allowance; when there is none
	// left it answers false and how long until there is.
	Allow(ctx context.Context, key string) (bool, time.Duration)
	// Rate is the limit in requests per second (0: none).
	Rate() int
}

// WithEventRateLimit limits POST /v1/events per tenant: a tenant over its
// rate gets 429 with Retry-After and a problem document, before its body
// is read; other tenants are unaffected.
func WithEventRateLimit(l RateLimiter) Option { return func(s *Server) { s.eventLimit = l } }

// WithMaxInflightEventBytes bounds the bytes of event bodies this process
// holds at intake, from before they are read until they are stored
// (default DefaultMaxInflightEventBytes; <= 0 keeps it). Over it, POST
// /v1/events answers 503 with Retry-After at once, before reading the
// body. A body larger than the bound is accepted when it is alone.
func WithMaxInflightEventBytes(n int64) Option {
	return func(s *Server) {
		if n > 0 {
			s.inflight.max = n
		}
	}
}

// WithTestSendRateLimit limits POST /v1/endpoints/{id}/test per tenant: a
// tenant over its rate gets 429 with Retry-After and a problem document,
// before anything is read or sent.
func WithTestSendRateLimit(l RateLimiter) Option { return func(s *Server) { s.testLimit = l } }

// EndpointLimiter admits requests to an endpoint under the limits its
// deliveries obey (pkg/limit: its rate_limit and the concurrency cap,
// shared by every replica through Redis).
type EndpointLimiter interface {
	// Admit asks to send one request to endpoint now, at most rate per
	// second (0: no rate limit). ttl bounds how long the slot is held if
	// Release is never called.
	Admit(ctx context.Context, endpoint string, rate int, ttl time.Duration) Admission
}

// Admission is an EndpointLimiter's answer.
type Admission struct {
	OK bool
	// Release frees the slot (when OK): call it once, after the request.
	Release func()
	// Wait is how long until asking again may succeed, and Reason ("rate"
	// or "concurrency") why not now (when not OK).
	Wait   time.Duration
	Reason string
}

// WithLimiter makes test sends obey each endpoint's limits, with the
// deliveries: a test refused by them answers 429 with Retry-After, and
// sends nothing. Without it, test sends are limited only per tenant.
func WithLimiter(l EndpointLimiter) Option { return func(s *Server) { s.endpoints = l } }

// New returns the API server.
func New(st Store, pub Publisher, opts ...Option) *Server {
	s := &Server{store: st, pub: pub, maxEvent: DefaultMaxEventBytes, log: zerolog.Nop(), mux: http.NewServeMux(),
		inflight: budget{max: DefaultMaxInflightEventBytes}}
	s.keys.ttl = 5 * time.Second
	for _, o := range opts {
		o(s)
	}
	if s.client == nil {
		s.client = deliver.New()
	}
	s.routes()
	return s
}

// routes registers every route. The OpenAPI description (openapi.yaml)
// lists the same ones; a test keeps the two equal.
func (s *Server) routes() {
	handle := s.handle
	handle("GET /openapi.yaml", serveOpenAPI)

	handle("POST /v1/events", s.tenant(s.postEvent))
	handle("GET /v1/events/{id}", s.tenant(s.getEvent))

	handle("POST /v1/tenants", s.admin(s.createTenant))
	handle("GET /v1/tenants", s.admin(s.listTenants))
	handle("GET /v1/tenants/{tenant}", s.admin(s.getTenant))
	handle("PATCH /v1/tenants/{tenant}", s.admin(s.renameTenant))
	handle("DELETE /v1/tenants/{tenant}", s.admin(s.deleteTenant))
	handle("GET /v1/tenants/{tenant}/keys", s.admin(s.listKeys))
	handle("POST /v1/tenants/{tenant}/keys", s.admin(s.createKey))
	handle("DELETE /v1/tenants/{tenant}/keys/{key}", s.admin(s.revokeKey))

	handle("POST /v1/endpoints", s.tenant(s.createEndpoint))
	handle("GET /v1/endpoints", s.tenant(s.listEndpoints))
	handle("GET /v1/endpoints/{id}", s.tenant(s.getEndpoint))
	handle("PATCH /v1/endpoints/{id}", s.tenant(s.patchEndpoint))
	handle("DELETE /v1/endpoints/{id}", s.tenant(s.deleteEndpoint))
	handle("GET /v1/endpoints/{id}/secret", s.tenant(s.getSecret))
	handle("POST /v1/endpoints/{id}/secret/rotate", s.tenant(s.rotateSecret))
	handle("POST /v1/endpoints/{id}/test", s.tenant(s.testEndpoint))
	handle("GET /v1/endpoints/{id}/attempts", s.tenant(s.listAttempts))
	handle("GET /v1/attempts/stream", s.tenant(s.followAttempts))
	handle("POST /v1/listen", s.tenant(s.createListen))
	handle("GET /v1/endpoints/{id}/listen", s.tenant(s.streamListen))
	handle("POST /v1/endpoints/{id}/listen/responses", s.tenant(s.respondListen))

	handle("POST /v1/event-types", s.tenant(s.createEventType))
	handle("GET /v1/event-types", s.tenant(s.listEventTypes))
	handle("GET /v1/event-types/{name}", s.tenant(s.getEventType))
	handle("PATCH /v1/event-types/{name}", s.tenant(s.patchEventType))
	handle("DELETE /v1/event-types/{name}", s.tenant(s.deleteEventType))
	s.dlqRoutes()

	handle("POST /v1/portal/sessions", s.tenant(s.createSession))

	s.mux.HandleFunc("/", s.noRoute)
}

// probedMethods are the methods noRoute tries a path with. HEAD is served
// wherever GET is (ServeMux routes it to the GET pattern).
var probedMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// noRoute answers a request no route takes: 405 with Allow when the path
// is served with other methods, else 404. ServeMux would answer that 405
// itself, but in plain text, and the catch-all "/" that gives every other
// answer a problem document takes the request first.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range probedMethods {
		if _, pattern := s.mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		notFound(w, r, "route")
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeProblem(w, r, Problem{Type: problemBase + "method-not-allowed", Title: "Method not allowed", Status: http.StatusMethodNotAllowed,
		Detail: fmt.Sprintf("%s is not served on this path; it takes %s", r.Method, strings.Join(allow, ", "))})
}

// handle registers a route and remembers its pattern for Routes. Every
// route's body is capped before anything else runs (authentication
// included): POST /v1/events at the event limit plus its envelope, every
// other route at the management limit, whether it reads a body or not.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.patterns = append(s.patterns, pattern)
	limit := int64(maxManagementBytes)
	tooLarge := func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, Problem{Type: problemBase + "too-large", Title: "Request body too large", Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("the body is larger than the limit of %d bytes", limit), Limit: limit})
	}
	if pattern == "POST /v1/events" {
		limit = s.maxEvent + EventEnvelopeBytes
		tooLarge = func(w http.ResponseWriter, r *http.Request) {
			s.eventTooLarge(w, r, fmt.Sprintf("the request body is larger than %d bytes", limit))
		}
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			tooLarge(w, r)
			return
		}
		r.Body = http.MaxBytesReader(unwrap(w), r.Body, limit)
		h(w, r)
	})
}

// Routes lists the patterns ("METHOD /path/{param}") registered through
// handle, in registration order.
func (s *Server) Routes() []string { return slices.Clone(s.patterns) }

// ServeHTTP applies the edge rules common to every route, then routes.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	defer func() { observe(r, w.code(), time.Since(start)) }()
	if len(r.URL.RequestURI()) > maxURLLength {
		writeProblem(w, r, Problem{Type: problemBase + "uri-too-long", Status: http.StatusRequestURITooLong,
			Detail: fmt.Sprintf("the URL is longer than %d bytes", maxURLLength)})
		return
	}
	if n := headerBytes(r); n > MaxHeaderBytes {
		w.Header().Set("Connection", "close")
		writeProblem(w, r, Problem{Type: problemBase + "headers-too-large", Status: http.StatusRequestHeaderFieldsTooLarge,
			Detail: fmt.Sprintf("the request line and header fields are %d bytes, more than the limit of %d", n, MaxHeaderBytes), Limit: MaxHeaderBytes})
		return
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error().Interface("panic", v).Str("path", r.URL.Path).Msg("handler panicked")
			internal(w, r)
		}
	}()
	s.mux.ServeHTTP(w, r)
}

// headerBytes is about what r's request line and header fields took on
// the wire (HTTP/1.1 framing: "Name: value" and CRLF per field).
func headerBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	n += len("Host: ") + len(r.Host) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

type tenantKey struct{}

// tenantOf returns the tenant the request authenticated as.
func tenantOf(r *http.Request) string { return r.Context().Value(tenantKey{}).(string) }

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return strings.TrimSpace(tok), ok && tok != ""
}

// admin guards operator routes with the admin token, compared in constant
// time.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		if !ok || len(s.adminToken) == 0 || !equalSecret(tok, s.adminToken) {
			s.refused(r, "admin token", tok)
			unauthorized(w, r, "this route needs the operator token (HERALD_ADMIN_TOKEN) as a Bearer token")
			return
		}
		h(w, r)
	}
}

// refused logs a request refused for its credentials. It is at info: a
// client's mistake or a probe, not Herald's, yet an operator looking for a
// client that cannot get in must find it. Of the key or token presented only
// its prefix is logged (store.KeyPrefix), which for an API key is the prefix
// its listing shows.
func (s *Server) refused(r *http.Request, credential, presented string) {
	e := s.log.Info().Str("credential", credential).Str("method", r.Method).Str("path", r.URL.Path).Str("client_addr", r.RemoteAddr)
	if presented != "" {
		e = e.Str("key_prefix", store.KeyPrefix(presented))
	}
	e.Msg("authentication failed")
}

// equalSecret compares a presented token with the expected one in constant
// time, lengths included: both are hashed first, since
// subtle.ConstantTimeCompare returns at once on different lengths.
func equalSecret(presented string, want []byte) bool {
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256(want)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// tenant guards tenant routes with an API key, or a portal session token
// (hps_..., see authenticateSession) within its scope, and puts the tenant
// in the request context. Every tenant route looks things up under that tenant only,
// so another tenant's ids are simply not found.
func (s *Server) tenant(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := bearer(r)
		if !ok {
			s.refused(r, "API key", "")
			unauthorized(w, r, "send the tenant's API key as 'Authorization: Bearer hk_...'")
			return
		}
		if session.Looks(key) {
			if r, ok := s.authenticateSession(w, r, key); ok {
				h(w, r)
			}
			return
		}
		tenant, err := s.authenticate(r.Context(), key)
		if errors.Is(err, store.ErrNotFound) {
			s.refused(r, "API key", key)
			unauthorized(w, r, "unknown or revoked API key")
			return
		}
		if err != nil {
			s.log.Error().Err(err).Msg("authenticate")
			unavailable(w, r, "the key store is unavailable")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), tenantKey{}, tenant)))
	}
}

// keyCache remembers recent successful authentications for a few seconds, so
// event intake does not read the store on every request. A revoked key stops
// working within that time.
type keyCache struct {
	mu  sync.Mutex
	m   map[string]keyEntry
	ttl time.Duration
}

type keyEntry struct {
	tenant string
	until  time.Time
}

func (s *Server) authenticate(ctx context.Context, key string) (string, error) {
	now := time.Now()
	s.keys.mu.Lock()
	e, ok := s.keys.m[key]
	s.keys.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.tenant, nil
	}
	tenant, err := s.store.Authenticate(ctx, key)
	if err != nil {
		return "", err
	}
	s.keys.mu.Lock()
	if s.keys.m == nil || len(s.keys.m) > 10_000 {
		s.keys.m = map[string]keyEntry{}
	}
	s.keys.m[key] = keyEntry{tenant: tenant, until: now.Add(s.keys.ttl)}
	s.keys.mu.Unlock()
	return tenant, nil
}

func (s *Server) forgetKeys() {
	s.keys.mu.Lock()
	s.keys.m = nil
	s.keys.mu.Unlock()
}

// readBody reads at most limit bytes; it answers 413 (with the limit) and
// returns false when the body is larger.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, r, Problem{Type: problemBase + "too-large", Title: "Request body too large", Status: http.StatusRequestEntityTooLarge,
				Detail: fmt.Sprintf("the body is larger than the limit of %d bytes", limit), Limit: limit})
			return nil, false
		}
		badRequest(w, r, "could not read the request body")
		return nil, false
	}
	return b, true
}

// decode reads a JSON body strictly into v: a JSON content type, bounded
// size, valid UTF-8, no unknown fields, no key twice, one value only.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if !jsonContent(w, r) {
		return false
	}
	b, ok := readBody(w, r, maxManagementBytes)
	if !ok {
		return false
	}
	if err := strictjson.Decode(b, v); err != nil {
		badRequest(w, r, err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// storeError answers for a store failure: 404 for not found, 422 for
// validation, 503 for anything else (the store is unreachable).
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error, what string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		notFound(w, r, what)
	case invalid(w, r, err):
	case errors.Is(err, store.ErrExists):
		writeProblem(w, r, Problem{Type: problemBase + "conflict", Status: http.StatusConflict, Detail: what + " already exists"})
	case errors.Is(err, store.ErrLastKey):
		writeProblem(w, r, Problem{Type: problemBase + "conflict", Status: http.StatusConflict, Detail: err.Error()})
	case errors.Is(err, store.ErrConflict):
		writeProblem(w, r, Problem{Type: problemBase + "conflict", Status: http.StatusConflict, Detail: what + " changed concurrently; retry"})
	case errors.Is(err, store.ErrSealed):
		// The error names the key id, never a secret or a key.
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("endpoint secret cannot be decrypted with the configured keys")
		unavailable(w, r, "the endpoint's signing secret cannot be decrypted with the keys this deployment is configured with; the operator must restore the key")
	default:
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("store failure")
		unavailable(w, r, "the configuration store is unavailable")
	}
}
