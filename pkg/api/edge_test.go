package api_test

// Edge rules, route by route: body limits, strict JSON, rate limits, and
// what the log may hold.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/ratelimit"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/store"
)

const edgeMaxEvent = 1024

// newEdgeEnv is newEnv with the dead-letter routes, a small event limit, and
// opts last (so a logger given there wins).
func newEdgeEnv(t *testing.T, opts ...api.Option) *env {
	t.Helper()
	var svc *dlq.Service
	e := newEnv(t, func(st *store.Store) *cache.Cache { return cache.New(st, st.KV()) }, append([]api.Option{
		api.WithMaxEventBytes(edgeMaxEvent),
		api.WithDLQ(lazyDLQ{&svc}),
	}, opts...)...)
	var err error
	svc, err = dlq.New(testCtx(t), e.js, e.cache)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// lazyDLQ lets newEdgeEnv create the dead-letter service after newEnv made
// the JetStream it needs; every route under test refuses its body before
// reaching it.
type lazyDLQ struct{ s **dlq.Service }

func (l lazyDLQ) List(ctx context.Context, tenant string, q dlq.Query) (dlq.Page, error) {
	return (*l.s).List(ctx, tenant, q)
}
func (l lazyDLQ) Get(ctx context.Context, tenant string, id uint64) (dlq.Entry, error) {
	return (*l.s).Get(ctx, tenant, id)
}
func (l lazyDLQ) StartReplay(ctx context.Context, tenant string, req dlq.ReplayRequest) (dlq.Replay, error) {
	return (*l.s).StartReplay(ctx, tenant, req)
}
func (l lazyDLQ) Replay(ctx context.Context, tenant, id string) (dlq.Replay, error) {
	return (*l.s).Replay(ctx, tenant, id)
}
func (l lazyDLQ) Replays(ctx context.Context, tenant string, limit int) ([]dlq.Replay, error) {
	return (*l.s).Replays(ctx, tenant, limit)
}
func (l lazyDLQ) Recover(ctx context.Context, tenant, endpointID string, since, until time.Time, rate int) (dlq.Replay, error) {
	return (*l.s).Recover(ctx, tenant, endpointID, since, until, rate)
}
func (l lazyDLQ) Resend(ctx context.Context, tenant, eventID, endpointID string) (dlq.Resent, error) {
	return (*l.s).Resend(ctx, tenant, eventID, endpointID)
}

// bodyRoute is a route that reads a JSON body: a valid-looking body with
// one unknown field added, and one with a field of the wrong type.
type bodyRoute struct {
	pattern   string
	unknown   string
	wrongType string
	field     string // named in the wrong-type problem
}

var bodyRoutes = []bodyRoute{
	{"POST /v1/events", `{"type":"a.b","data":1,"tenant":"x"}`, `{"type":5,"data":1}`, "type"},
	{"POST /v1/tenants", `{"name":"n","plan":"gold"}`, `{"name":5}`, "name"},
	{"PATCH /v1/tenants/{tenant}", `{"name":"n","plan":"gold"}`, `{"name":["n"]}`, "name"},
	{"POST /v1/endpoints", `{"name":"n","url":"https://example.com","events":["*"],"retries":3}`, `{"url":5}`, "url"},
	{"PATCH /v1/endpoints/{id}", `{"name":"n","api_key":"x"}`, `{"enabled":"yes"}`, "enabled"},
	{"POST /v1/endpoints/{id}/secret/rotate", `{"grace":1}`, `{"grace_period_seconds":"1"}`, "grace_period_seconds"},
	{"POST /v1/endpoints/{id}/test", `{"event_type":"a.b","payload":{}}`, `{"event_type":5}`, "event_type"},
	{"POST /v1/endpoints/{id}/recover", `{"since":"1h","speed":1}`, `{"since":5}`, "since"},
	{"POST /v1/event-types", `{"name":"a.b","schema":{}}`, `{"description":5}`, "description"},
	{"PATCH /v1/event-types/{name}", `{"description":"d","name":"x"}`, `{"description":false}`, "description"},
	{"POST /v1/dlq/replay", `{"all":true,"dry_run":true}`, `{"rate":"fast"}`, "rate"},
	{"POST /v1/events/{id}/resend", `{"endpoint_id":"ep_1","force":true}`, `{"endpoint_id":5}`, "endpoint_id"},
	{"POST /v1/listen", `{"events":["*"],"tunnel":true}`, `{"events":"*"}`, "events"},
	{"POST /v1/endpoints/{id}/listen/responses", `{"request_id":"r","status":200,"latency":1}`, `{"status":"200"}`, "status"},
	{"POST /v1/portal/sessions", `{"read_only":true,"admin":true}`, `{"read_only":"yes"}`, "read_only"},
}

// bodyless are the POST and PATCH routes that read no body.
var bodyless = map[string]bool{"POST /v1/tenants/{tenant}/keys": true}

// concrete turns a pattern into a method and a path with made-up ids.
func concrete(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	r := strings.NewReplacer("{tenant}", "tn_missing", "{id}", "x_missing", "{name}", "a.missing", "{key}", "key_missing")
	return method, r.Replace(path)
}

// authFor is the Authorization header a route wants.
func authFor(pattern, key string) string {
	if strings.Contains(pattern, "/v1/tenants") {
		return admin
	}
	return bearer(key)
}

func TestEdgeRulesOnEveryRoute(t *testing.T) {
	e := newEdgeEnv(t)
	_, key := e.tenant("edge")
	srv := api.New(nil, nil, api.WithMaxEventBytes(edgeMaxEvent), api.WithDLQ(lazyDLQ{}))

	// Every route that may take a body is in the table below.
	covered := map[string]bool{}
	for _, br := range bodyRoutes {
		covered[br.pattern] = true
	}
	for _, p := range srv.Routes() {
		m, _, _ := strings.Cut(p, " ")
		if (m == "POST" || m == "PATCH" || m == "PUT") && !covered[p] && !bodyless[p] {
			t.Errorf("route %s reads a body but is not in bodyRoutes: add its edge cases", p)
		}
	}

	// Oversized bodies: 413 with the limit, on every route, before
	// anything else (authentication included).
	for _, p := range srv.Routes() {
		limit := int64(64 << 10)
		if p == "POST /v1/events" {
			limit = edgeMaxEvent + api.EventEnvelopeBytes
		}
		method, path := concrete(p)
		big := `{"name":"` + strings.Repeat("a", int(limit)) + `"}`
		for _, auth := range []string{authFor(p, key), ""} {
			pr := e.do(method, path, auth, big).problem(t, http.StatusRequestEntityTooLarge)
			if p != "POST /v1/events" && pr.Limit != limit {
				t.Errorf("%s: 413 limit %d, want %d", p, pr.Limit, limit)
			}
		}
	}

	for _, br := range bodyRoutes {
		method, path := concrete(br.pattern)
		auth := authFor(br.pattern, key)
		t.Run(strings.ReplaceAll(br.pattern, "/", "_"), func(t *testing.T) {
			// A body without Content-Length is cut at the limit too.
			limit := 64 << 10
			if br.pattern == "POST /v1/events" {
				limit = edgeMaxEvent + api.EventEnvelopeBytes
			}
			e.chunked(t, method, path, auth, limit+1).problem(t, http.StatusRequestEntityTooLarge)

			pr := e.do(method, path, auth, br.unknown).problem(t, http.StatusBadRequest)
			if !strings.Contains(pr.Detail, "unknown field") {
				t.Errorf("unknown field: detail %q", pr.Detail)
			}
			pr = e.do(method, path, auth, br.wrongType).problem(t, http.StatusBadRequest)
			if !strings.Contains(pr.Detail, br.field) {
				t.Errorf("wrong type: detail %q does not name %q", pr.Detail, br.field)
			}
			invalid := []byte(br.unknown[:len(br.unknown)-1] + `,"x":"` + "\xff\xfe" + `"}`)
			pr = e.do(method, path, auth, invalid).problem(t, http.StatusBadRequest)
			if !strings.Contains(pr.Detail, "UTF-8") {
				t.Errorf("invalid UTF-8: detail %q", pr.Detail)
			}
			for _, junk := range []string{`{"a":1}{"b":2}`, `{`, `[]`, `"text"`} {
				e.do(method, path, auth, junk).problem(t, http.StatusBadRequest)
			}
		})
	}
}

// chunked sends n bytes of a JSON string without Content-Length.
func (e *env) chunked(t *testing.T, method, path, auth string, n int) response {
	t.Helper()
	body := io.MultiReader(strings.NewReader(`{"name":"`), io.LimitReader(repeatReader('a'), int64(n)), strings.NewReader(`"}`))
	req, _ := http.NewRequestWithContext(testCtx(t), method, e.srv.URL+path, body)
	req.ContentLength = -1
	req.Header.Set("Authorization", auth)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestTenantEventRateLimit(t *testing.T) {
	url, prefix := testenv.Redis(t)
	opt, _ := redis.ParseURL(url)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	// 1 event per second, bursts of 3: the fourth in a row is refused.
	e := newEnv(t, nil, api.WithEventRateLimit(ratelimit.New(rdb, prefix, 1, 3)))
	_, noisy := e.tenant("noisy")
	_, quiet := e.tenant("quiet")
	post := func(key, id string) response {
		return e.do("POST", "/v1/events", bearer(key), `{"type":"a.b","id":"`+id+`","data":1}`)
	}
	for i := range 3 {
		if r := post(noisy, "n"+strconv.Itoa(i)); r.status != http.StatusAccepted {
			t.Fatalf("event %d within the burst: %d %s", i, r.status, r.body)
		}
	}
	before := e.eventCount()
	r := post(noisy, "over")
	p := r.problem(t, http.StatusTooManyRequests)
	if p.Type != "https://herald.dev/problems/rate-limited" || !strings.Contains(p.Detail, "1 events per second") {
		t.Fatalf("429 problem %+v", p)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 1 {
		t.Fatalf("Retry-After %q, want 1 (seconds until a token)", r.header.Get("Retry-After"))
	}
	if e.eventCount() != before {
		t.Fatal("a refused event was stored")
	}
	// Another tenant is unaffected, and so are the noisy tenant's other
	// routes.
	for i := range 3 {
		if r := post(quiet, "q"+strconv.Itoa(i)); r.status != http.StatusAccepted {
			t.Fatalf("other tenant's event %d: %d %s", i, r.status, r.body)
		}
	}
	if r := e.do("GET", "/v1/endpoints", bearer(noisy), nil); r.status != http.StatusOK {
		t.Fatalf("management route of the limited tenant: %d", r.status)
	}
	// An unauthenticated request spends nobody's allowance.
	if r := e.do("POST", "/v1/events", bearer("hk_wrong"), `{"type":"a.b","data":1}`); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", r.status)
	}
}

// No log line, at debug level, of a succeeding or failing request holds an
// API key, the operator token or an endpoint secret.
func TestCredentialsNeverLogged(t *testing.T) {
	var logs testenv.Buffer
	e := newEdgeEnv(t, api.WithLogger(zerolog.New(&logs).Level(zerolog.DebugLevel)))
	_, key := e.tenant("creds")
	ep := e.endpoint(key, nil)
	secret := ep["secret"].(string)
	id := ep["id"].(string)
	rot := e.do("POST", "/v1/endpoints/"+id+"/secret/rotate", bearer(key), nil).json(t)
	for _, c := range []struct {
		method, path, auth string
		body               any
		want               int
	}{
		{"POST", "/v1/events", bearer(key), `{"type":"a.b","data":1}`, 202},
		{"POST", "/v1/events", bearer(key + "x"), `{"type":"a.b","data":1}`, 401},
		{"POST", "/v1/events", "Basic " + key, `{"type":"a.b","data":1}`, 401},
		{"GET", "/v1/tenants", bearer(adminToken + "x"), nil, 401},
		{"GET", "/v1/tenants", bearer(adminToken[:10]), nil, 401},
		{"GET", "/v1/tenants", bearer(key), nil, 401},
		{"GET", "/v1/endpoints", bearer(adminToken), nil, 401},
		{"POST", "/v1/endpoints/" + id + "/secret/rotate", bearer(key), `{"secret":"` + secret + `x!"}`, 422},
		{"POST", "/v1/endpoints", bearer(key), `{"name":"n","url":"https://example.com","events":["*"],"secret":"enc:` + secret + `"}`, 422},
		{"GET", "/v1/endpoints/" + id + "/secret", bearer(key), nil, 200},
	} {
		if r := e.do(c.method, c.path, c.auth, c.body); r.status != c.want {
			t.Fatalf("%s %s: %d, want %d: %s", c.method, c.path, r.status, c.want, r.body)
		}
	}
	out := logs.String()
	for what, v := range map[string]string{"API key": key, "API key body": key[3:15], "operator token": adminToken,
		"secret": secret, "rotated secret": rot["secret"].(string), "secret body": strings.TrimPrefix(secret, "whsec_")[:12]} {
		if strings.Contains(out, v) {
			t.Errorf("the log holds the %s:\n%s", what, out)
		}
	}
}

// An endpoint whose secret this process cannot decrypt answers 503 and
// names the problem; it is never shown or used without its secret.
func TestUndecryptableSecretFailsLoudly(t *testing.T) {
	e := newEnv(t, nil)
	id, key := e.tenant("sealed")
	sl, err := seal.New(bytes.Repeat([]byte{5}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	// Another process, holding a key this API does not, wrote it.
	other, err := store.Open(testCtx(t), e.js, store.WithSealer(sl))
	if err != nil {
		t.Fatal(err)
	}
	ep, err := other.CreateEndpoint(testCtx(t), id, store.Endpoint{Name: "n", URL: "https://example.com", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/endpoints/" + ep.ID, "/v1/endpoints/" + ep.ID + "/secret", "/v1/endpoints"} {
		p := e.do("GET", path, bearer(key), nil).problem(t, http.StatusServiceUnavailable)
		if !strings.Contains(p.Detail, "cannot be decrypted") || strings.Contains(p.Detail, "enc:") {
			t.Fatalf("GET %s: %+v", path, p)
		}
	}
	e.do("POST", "/v1/endpoints/"+ep.ID+"/secret/rotate", bearer(key), nil).problem(t, http.StatusServiceUnavailable)
	if r := e.do("DELETE", "/v1/endpoints/"+ep.ID, bearer(key), nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE of an undecryptable endpoint: %d %s", r.status, r.body)
	}
}
