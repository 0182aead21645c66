package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

const adminToken = "admin-token-for-tests-0123456789"

type env struct {
	t     *testing.T
	srv   *httptest.Server
	st    *store.Store
	js    jetstream.JetStream
	cache *cache.Cache
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newEnv serves the API over a real JetStream (streams and config bucket)
// with a cache as its invalidator; c, when given, replaces that cache.
func newEnv(t *testing.T, c func(*store.Store) *cache.Cache, opts ...api.Option) *env {
	t.Helper()
	ctx := testCtx(t)
	js := testenv.JetStream(t)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	var ch *cache.Cache
	if c != nil {
		ch = c(st)
	} else {
		ch = cache.New(st, st.KV())
	}
	opts = append([]api.Option{api.WithAdminToken(adminToken), api.WithInvalidator(ch), api.WithLogger(testenv.Logger(t))}, opts...)
	srv := httptest.NewServer(api.New(st, ingest.New(js), opts...))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, st: st, js: js, cache: ch}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d body %q is not a JSON object: %v", r.status, r.body, err)
	}
	return m
}

type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
	Errors   []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
	Limit int64 `json:"limit"`
}

// problem checks r is an RFC 9457 problem with status and returns it.
func (r response) problem(t *testing.T, status int) problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p.Status != status || p.Type == "" || p.Title == "" {
		t.Fatalf("problem %+v", p)
	}
	return p
}

func (p problem) fields() []string {
	var out []string
	for _, e := range p.Errors {
		if e.Message == "" {
			return []string{"<error without message for " + e.Field + ">"}
		}
		out = append(out, e.Field)
	}
	slices.Sort(out)
	return out
}

// do sends a request; body is sent as is when it is a string or []byte and
// as JSON otherwise; auth is the whole Authorization header ("" for none).
func (e *env) do(method, path, auth string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(testCtx(e.t), method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(tok string) string { return "Bearer " + tok }

var admin = bearer(adminToken)

// tenant creates a tenant through the API and returns its id and key.
func (e *env) tenant(name string) (id, key string) {
	e.t.Helper()
	r := e.do("POST", "/v1/tenants", admin, map[string]any{"name": name})
	if r.status != http.StatusCreated {
		e.t.Fatalf("create tenant: %d %s", r.status, r.body)
	}
	m := r.json(e.t)
	return m["id"].(string), m["api_key"].(string)
}

// endpoint creates an endpoint through the API and returns its view.
func (e *env) endpoint(key string, fields map[string]any) map[string]any {
	e.t.Helper()
	body := map[string]any{"name": "hook", "url": "https://example.com/hook", "events": []string{"user.*"}}
	for k, v := range fields {
		body[k] = v
	}
	r := e.do("POST", "/v1/endpoints", bearer(key), body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create endpoint: %d %s", r.status, r.body)
	}
	return r.json(e.t)
}

// eventCount is how many messages the EVENTS stream holds.
func (e *env) eventCount() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(testCtx(e.t), bus.StreamEvents)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(testCtx(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	tn, key := e.tenant("A")
	ep := e.endpoint(key, nil)
	epID := ep["id"].(string)
	keys := e.do("GET", "/v1/tenants/"+tn+"/keys", admin, nil).json(t)["data"].([]any)
	keyID := keys[0].(map[string]any)["id"].(string)

	adminRoutes := [][2]string{
		{"POST", "/v1/tenants"}, {"GET", "/v1/tenants"}, {"GET", "/v1/tenants/" + tn}, {"PATCH", "/v1/tenants/" + tn},
		{"DELETE", "/v1/tenants/" + tn}, {"GET", "/v1/tenants/" + tn + "/keys"}, {"POST", "/v1/tenants/" + tn + "/keys"},
		{"DELETE", "/v1/tenants/" + tn + "/keys/" + keyID},
	}
	tenantRoutes := [][2]string{
		{"POST", "/v1/events"}, {"POST", "/v1/endpoints"}, {"GET", "/v1/endpoints"}, {"GET", "/v1/endpoints/" + epID},
		{"PATCH", "/v1/endpoints/" + epID}, {"DELETE", "/v1/endpoints/" + epID},
	}
	common := map[string]string{
		"no header":           "",
		"basic scheme":        "Basic " + adminToken,
		"empty bearer":        "Bearer ",
		"lowercase scheme":    "bearer " + adminToken,
		"wrong token":         bearer("wrong"),
		"admin token prefix":  bearer(adminToken[:len(adminToken)-1]),
		"admin token longer":  bearer(adminToken + "x"),
		"unknown tenant key":  bearer("hk_" + strings.Repeat("A", 43)),
		"tenant key mangled":  bearer(key[:len(key)-1] + "x"),
		"tenant key as basic": "Basic " + key,
	}
	check := func(t *testing.T, method, path, auth string) {
		t.Helper()
		r := e.do(method, path, auth, `{"name":"x","type":"t","data":1,"url":"https://example.com/","events":["*"]}`)
		p := r.problem(t, http.StatusUnauthorized)
		if !strings.HasSuffix(p.Type, "unauthorized") {
			t.Fatalf("problem type %q", p.Type)
		}
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Fatalf("WWW-Authenticate %q", got)
		}
	}
	for _, rt := range adminRoutes {
		for name, auth := range common {
			t.Run("admin "+rt[0]+" "+rt[1]+" "+name, func(t *testing.T) { check(t, rt[0], rt[1], auth) })
		}
		t.Run("admin "+rt[0]+" "+rt[1]+" tenant key", func(t *testing.T) { check(t, rt[0], rt[1], bearer(key)) })
	}
	for _, rt := range tenantRoutes {
		for name, auth := range common {
			t.Run("tenant "+rt[0]+" "+rt[1]+" "+name, func(t *testing.T) { check(t, rt[0], rt[1], auth) })
		}
		t.Run("tenant "+rt[0]+" "+rt[1]+" admin token", func(t *testing.T) { check(t, rt[0], rt[1], admin) })
	}

	// Nothing was done by any refused request.
	if r := e.do("GET", "/v1/tenants/"+tn, admin, nil); r.status != http.StatusOK || r.json(t)["name"] != "A" {
		t.Fatalf("tenant after refused requests: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/endpoints/"+epID, bearer(key), nil); r.status != http.StatusOK || r.json(t)["name"] != "hook" {
		t.Fatalf("endpoint after refused requests: %d %s", r.status, r.body)
	}
	if eps, _ := e.st.ListEndpoints(testCtx(t), tn); len(eps) != 1 {
		t.Fatalf("endpoints after refused requests: %d", len(eps))
	}
	if ks, _ := e.st.APIKeys(testCtx(t), tn); len(ks) != 1 {
		t.Fatalf("keys after refused requests: %d", len(ks))
	}
	if ts, _ := e.st.ListTenants(testCtx(t)); len(ts) != 1 {
		t.Fatalf("tenants after refused requests: %d", len(ts))
	}
	if n := e.eventCount(); n != 0 {
		t.Fatalf("%d events stored by refused requests", n)
	}
}

func TestAdminRoutesWithoutAdminToken(t *testing.T) {
	e := newEnv(t, nil, api.WithAdminToken(""))
	for _, auth := range []string{"", "Bearer ", bearer("x"), bearer(adminToken)} {
		e.do("POST", "/v1/tenants", auth, map[string]any{"name": "x"}).problem(t, http.StatusUnauthorized)
		e.do("GET", "/v1/tenants", auth, nil).problem(t, http.StatusUnauthorized)
	}
	if ts, _ := e.st.ListTenants(testCtx(t)); len(ts) != 0 {
		t.Fatalf("tenants created without an admin token: %v", ts)
	}
}

func TestUnknownRouteAndLongURL(t *testing.T) {
	e := newEnv(t, nil)
	e.do("GET", "/v2/whatever", admin, nil).problem(t, http.StatusNotFound)
	long := "/v1/endpoints/" + strings.Repeat("a", 4097)
	p := e.do("GET", long, admin, nil).problem(t, http.StatusRequestURITooLong)
	if !strings.Contains(p.Detail, "4096") {
		t.Fatalf("414 detail %q does not give the limit", p.Detail)
	}
	e.do("GET", "/v1/tenants?x="+strings.Repeat("a", 4096), admin, nil).problem(t, http.StatusRequestURITooLong)
	// Just under the limit goes through to routing and authentication.
	under := "/v1/endpoints/" + strings.Repeat("a", 4096-len("/v1/endpoints/"))
	e.do("GET", under, "", nil).problem(t, http.StatusUnauthorized)
}

func TestPostEvent(t *testing.T) {
	e := newEnv(t, nil)
	tnA, keyA := e.tenant("A")
	_, keyB := e.tenant("B")

	r := e.do("POST", "/v1/events", bearer(keyA), `{"type":"user.created","data":{"a":1}}`)
	if r.status != http.StatusAccepted || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("POST /v1/events: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	m := r.json(t)
	if id, _ := m["id"].(string); !strings.HasPrefix(id, "evt_") || m["duplicate"] != false || len(m) != 2 {
		t.Fatalf("answer %v, want {id: evt_..., duplicate: false}", m)
	}

	const data = `{ "order" : 42, "note":"caf\u00e9" }`
	body := `{"id":"order-42","type":"order.paid","data":` + data + `}`
	for i, wantDup := range []bool{false, true, true} {
		r := e.do("POST", "/v1/events", bearer(keyA), body)
		if r.status != http.StatusAccepted {
			t.Fatalf("post %d: %d %s", i, r.status, r.body)
		}
		if m := r.json(t); m["id"] != "order-42" || m["duplicate"] != wantDup {
			t.Fatalf("post %d answered %v, want id order-42 duplicate %v", i, m, wantDup)
		}
	}
	if n := e.eventCount(); n != 2 {
		t.Fatalf("EVENTS holds %d messages, want 2 (the repeated id stored once)", n)
	}
	s, _ := e.js.Stream(testCtx(t), bus.StreamEvents)
	msg, err := s.GetLastMsgForSubject(testCtx(t), bus.EventSubject(tnA, "order.paid"))
	if err != nil {
		t.Fatal(err)
	}
	var ev heraldv1.Event
	if err := proto.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Id != "order-42" || ev.TenantId != tnA || ev.Type != "order.paid" || string(ev.Data) != data || ev.AcceptedAtUnixMs == 0 {
		t.Fatalf("stored event %+v (data %s)", &ev, ev.Data)
	}

	// Idempotency keys are per tenant.
	r = e.do("POST", "/v1/events", bearer(keyB), body)
	if r.status != http.StatusAccepted || r.json(t)["duplicate"] != false {
		t.Fatalf("other tenant's same id: %d %s", r.status, r.body)
	}
	if n := e.eventCount(); n != 3 {
		t.Fatalf("EVENTS holds %d messages, want 3", n)
	}
}

func TestPostEventMalformed(t *testing.T) {
	e := newEnv(t, nil)
	_, key := e.tenant("A")
	for name, body := range map[string]string{
		"malformed JSON": `{"type":"t","data":`,
		"not JSON":       `type=t`,
		"unknown field":  `{"type":"t","data":1,"priority":"high"}`,
		"invalid UTF-8":  "{\"type\":\"t\",\"data\":\"\xff\"}",
		"trailing data":  `{"type":"t","data":1}{"type":"t","data":2}`,
		"trailing junk":  `{"type":"t","data":1} ok`,
		"empty body":     ``,
		"wrong type":     `{"type":["t"],"data":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := e.do("POST", "/v1/events", bearer(key), body).problem(t, http.StatusBadRequest)
			if !strings.HasSuffix(p.Type, "malformed-request") || p.Detail == "" || p.Instance != "/v1/events" {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	if n := e.eventCount(); n != 0 {
		t.Fatalf("%d malformed events stored", n)
	}
}

func TestPostEventInvalid(t *testing.T) {
	e := newEnv(t, nil)
	_, key := e.tenant("A")
	tests := map[string]struct {
		body   string
		fields []string
	}{
		"every field":      {`{"id":"has space","type":"a..b","data":null,"endpoint_id":"ep.1"}`, []string{"data", "endpoint_id", "id", "type"}},
		"type missing":     {`{"data":1}`, []string{"type"}},
		"type wildcard":    {`{"type":"user.*","data":1}`, []string{"type"}},
		"data missing":     {`{"type":"t"}`, []string{"data"}},
		"id too long":      {`{"id":"` + strings.Repeat("i", 129) + `","type":"t","data":1}`, []string{"id"}},
		"endpoint not tok": {`{"type":"t","data":1,"endpoint_id":"../x"}`, []string{"endpoint_id"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := e.do("POST", "/v1/events", bearer(key), tc.body).problem(t, http.StatusUnprocessableEntity)
			if got := p.fields(); !slices.Equal(got, tc.fields) {
				t.Fatalf("errors name %v, want %v (%s)", got, tc.fields, p.Errors)
			}
		})
	}
	if n := e.eventCount(); n != 0 {
		t.Fatalf("%d invalid events stored", n)
	}
}

func TestPostEventTooLarge(t *testing.T) {
	e := newEnv(t, nil, api.WithMaxEventBytes(1024))
	_, key := e.tenant("A")
	// The limit applies to the data (a JSON string of n bytes here); the
	// body may add api.EventEnvelopeBytes for the rest of the JSON.
	sized := func(n int) string {
		return `{"type":"t",  "data":"` + strings.Repeat("x", n-2) + `"}`
	}
	if r := e.do("POST", "/v1/events", bearer(key), sized(1024)); r.status != http.StatusAccepted {
		t.Fatalf("event of exactly the limit: %d %s", r.status, r.body)
	}
	for _, n := range []int{1025, 64 << 10, 4 << 20} {
		r := e.do("POST", "/v1/events", bearer(key), sized(n))
		p := r.problem(t, http.StatusRequestEntityTooLarge)
		if p.Limit != 1024 || !bytes.Contains(r.body, []byte(`"limit":1024`)) {
			t.Fatalf("413 for %d bytes: %s, want limit 1024", n, r.body)
		}
	}
	if n := e.eventCount(); n != 1 {
		t.Fatalf("EVENTS holds %d messages, want only the one within the limit", n)
	}
}

func TestPostEventForEndpoint(t *testing.T) {
	e := newEnv(t, nil)
	_, keyA := e.tenant("A")
	_, keyB := e.tenant("B")
	epA := e.endpoint(keyA, nil)["id"].(string)
	epB := e.endpoint(keyB, nil)["id"].(string)

	if r := e.do("POST", "/v1/events", bearer(keyA), `{"type":"t","data":1,"endpoint_id":"`+epA+`"}`); r.status != http.StatusAccepted {
		t.Fatalf("own endpoint: %d %s", r.status, r.body)
	}
	e.do("POST", "/v1/events", bearer(keyA), `{"type":"t","data":1,"endpoint_id":"`+epB+`"}`).problem(t, http.StatusNotFound)
	e.do("POST", "/v1/events", bearer(keyA), `{"type":"t","data":1,"endpoint_id":"ep_missing"}`).problem(t, http.StatusNotFound)
	if n := e.eventCount(); n != 1 {
		t.Fatalf("EVENTS holds %d messages, want 1", n)
	}
}

func TestEndpointLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	tn, key := e.tenant("A")
	auth := bearer(key)

	r := e.do("POST", "/v1/endpoints", auth, map[string]any{"name": "hook", "url": "https://example.com/h", "events": []string{"user.*"}})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	created := r.json(t)
	id := created["id"].(string)
	if r.header.Get("Location") != "/v1/endpoints/"+id {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	secret, _ := created["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("created endpoint shows secret %q", secret)
	}
	for k, want := range map[string]any{"method": "POST", "content_type": "application/json", "signature": "standard",
		"payload_format": "standard", "max_attempts": 5.0, "timeout_ms": 10000.0, "enabled": true, "rate_limit": 0.0} {
		if created[k] != want {
			t.Errorf("default %s = %v, want %v", k, created[k], want)
		}
	}
	if _, ok := created["old_secrets"]; ok {
		t.Error("old_secrets shown")
	}

	got := e.do("GET", "/v1/endpoints/"+id, auth, nil)
	if got.status != http.StatusOK || got.json(t)["secret"] != secret {
		t.Fatalf("get: %d %s", got.status, got.body)
	}

	list := e.do("GET", "/v1/endpoints", auth, nil)
	if list.status != http.StatusOK || bytes.Contains(list.body, []byte(secret)) || bytes.Contains(list.body, []byte(`"secret"`)) {
		t.Fatalf("list shows the secret or failed: %d %s", list.status, list.body)
	}
	if items := list.json(t)["data"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != id {
		t.Fatalf("list items %v", items)
	}

	// PATCH changes the named fields only.
	before := e.do("GET", "/v1/endpoints/"+id, auth, nil).json(t)
	r = e.do("PATCH", "/v1/endpoints/"+id, auth, `{"name":"renamed","headers":{"X-Token":"t"}}`)
	if r.status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	after := e.do("GET", "/v1/endpoints/"+id, auth, nil).json(t)
	for k, v := range before {
		switch k {
		case "name":
			if after[k] != "renamed" {
				t.Errorf("name = %v", after[k])
			}
		case "headers":
			if h := after[k].(map[string]any); len(h) != 1 || h["X-Token"] != "t" {
				t.Errorf("headers = %v", h)
			}
		case "updated_at":
		default:
			if j1, j2 := mustJSON(t, v), mustJSON(t, after[k]); j1 != j2 {
				t.Errorf("PATCH of name and headers changed %s: %s -> %s", k, j1, j2)
			}
		}
	}
	// Headers are replaced, not merged.
	r = e.do("PATCH", "/v1/endpoints/"+id, auth, `{"headers":{"X-Other":"o"}}`)
	if h := r.json(t)["headers"].(map[string]any); len(h) != 1 || h["X-Other"] != "o" {
		t.Fatalf("headers after replacing = %v", h)
	}

	// Re-enabling clears the reason Herald disabled it for.
	if err := e.st.DisableEndpoint(testCtx(t), tn, id, "endpoint answered 410 Gone; endpoint disabled"); err != nil {
		t.Fatal(err)
	}
	if g := e.do("GET", "/v1/endpoints/"+id, auth, nil).json(t); g["enabled"] != false || g["disabled_reason"] == nil {
		t.Fatalf("after disable: %v", g)
	}
	r = e.do("PATCH", "/v1/endpoints/"+id, auth, `{"enabled":true}`)
	if m := r.json(t); r.status != http.StatusOK || m["enabled"] != true || m["disabled_reason"] != nil {
		t.Fatalf("re-enable: %d %s", r.status, r.body)
	}
	if stored, _ := e.st.GetEndpoint(testCtx(t), tn, id); !stored.Enabled || stored.DisabledReason != "" {
		t.Fatalf("stored after re-enable: enabled=%v reason=%q", stored.Enabled, stored.DisabledReason)
	}

	// Invalid PATCHes change nothing.
	before = e.do("GET", "/v1/endpoints/"+id, auth, nil).json(t)
	p := e.do("PATCH", "/v1/endpoints/"+id, auth, `{"url":"ftp://example.com/","max_attempts":21,"events":[]}`).problem(t, http.StatusUnprocessableEntity)
	if f := p.fields(); !slices.Equal(f, []string{"events", "max_attempts", "url"}) {
		t.Fatalf("422 errors %v", f)
	}
	e.do("PATCH", "/v1/endpoints/"+id, auth, `{"nmae":"typo"}`).problem(t, http.StatusBadRequest)
	e.do("PATCH", "/v1/endpoints/"+id, auth, `{"max_attempts":"5"}`).problem(t, http.StatusBadRequest)
	if now := e.do("GET", "/v1/endpoints/"+id, auth, nil).json(t); mustJSON(t, now) != mustJSON(t, before) {
		t.Fatalf("refused PATCH changed the endpoint:\n%v\n%v", before, now)
	}

	// Delete.
	if r := e.do("DELETE", "/v1/endpoints/"+id, auth, nil); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	e.do("GET", "/v1/endpoints/"+id, auth, nil).problem(t, http.StatusNotFound)
	e.do("DELETE", "/v1/endpoints/"+id, auth, nil).problem(t, http.StatusNotFound)
	e.do("PATCH", "/v1/endpoints/"+id, auth, `{"name":"x"}`).problem(t, http.StatusNotFound)
	if items := e.do("GET", "/v1/endpoints", auth, nil).json(t)["data"].([]any); len(items) != 0 {
		t.Fatalf("list after delete %v", items)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCreateEndpointRefused(t *testing.T) {
	e := newEnv(t, nil)
	_, key := e.tenant("A")
	p := e.do("POST", "/v1/endpoints", bearer(key), map[string]any{
		"name": "", "url": "/relative", "events": []string{}, "method": "GET", "content_type": "text/plain",
		"headers": map[string]string{"Host": "x", "webhook-signature": "y"}, "max_attempts": 21, "timeout_ms": 999,
		"signature": "md5",
	}).problem(t, http.StatusUnprocessableEntity)
	want := []string{"content_type", "events", "headers.Host", "headers.webhook-signature", "max_attempts", "method", "name", "signature", "timeout_ms", "url"}
	if got := p.fields(); !slices.Equal(got, want) {
		t.Fatalf("errors %v\nwant   %v", got, want)
	}
	e.do("POST", "/v1/endpoints", bearer(key), `{"name":"n","url":"https://example.com/","events":["*"],"colour":"red"}`).problem(t, http.StatusBadRequest)
	e.do("POST", "/v1/endpoints", bearer(key), "{\"name\":\"\xff\"}").problem(t, http.StatusBadRequest)
	e.do("POST", "/v1/endpoints", bearer(key), `{"name":"n"} {}`).problem(t, http.StatusBadRequest)
	e.do("POST", "/v1/endpoints", bearer(key), `[]`).problem(t, http.StatusBadRequest)
	if items := e.do("GET", "/v1/endpoints", bearer(key), nil).json(t)["data"].([]any); len(items) != 0 {
		t.Fatalf("refused endpoints stored: %v", items)
	}
}

func TestEndpointsOfAnotherTenant(t *testing.T) {
	e := newEnv(t, nil)
	_, keyA := e.tenant("A")
	_, keyB := e.tenant("B")
	id := e.endpoint(keyA, nil)["id"].(string)
	before := e.do("GET", "/v1/endpoints/"+id, bearer(keyA), nil)

	e.do("GET", "/v1/endpoints/"+id, bearer(keyB), nil).problem(t, http.StatusNotFound)
	e.do("PATCH", "/v1/endpoints/"+id, bearer(keyB), `{"url":"https://attacker.example/","enabled":false}`).problem(t, http.StatusNotFound)
	e.do("DELETE", "/v1/endpoints/"+id, bearer(keyB), nil).problem(t, http.StatusNotFound)
	if items := e.do("GET", "/v1/endpoints", bearer(keyB), nil).json(t)["data"].([]any); len(items) != 0 {
		t.Fatalf("B lists A's endpoints: %v", items)
	}
	after := e.do("GET", "/v1/endpoints/"+id, bearer(keyA), nil)
	if after.status != http.StatusOK || !bytes.Equal(before.body, after.body) {
		t.Fatalf("A's endpoint changed by B:\n%s\n%s", before.body, after.body)
	}
}

// The API tells its invalidator of each change at once: a cache that cannot
// watch (not running) but shares Redis stops serving the old value.
func TestEndpointChangesInvalidateCache(t *testing.T) {
	url, prefix := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	e := newEnv(t, func(st *store.Store) *cache.Cache { return cache.New(st, st.KV(), cache.WithRedis(rdb, prefix)) })
	tn, key := e.tenant("A")
	id := e.endpoint(key, nil)["id"].(string)
	name := func() string {
		ep, err := e.cache.Endpoint(testCtx(t), tn, id)
		if err != nil {
			return "error: " + err.Error()
		}
		return ep.Name
	}
	if got := name(); got != "hook" {
		t.Fatalf("cached name %q", got)
	}
	// Written behind the API's back, the change stays unseen: the cache
	// really serves from Redis.
	if _, err := e.st.UpdateEndpoint(testCtx(t), tn, id, func(ep *store.Endpoint) error { ep.Name = "direct"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := name(); got != "hook" {
		t.Fatalf("cache not serving from Redis (got %q); the test would prove nothing", got)
	}
	if r := e.do("PATCH", "/v1/endpoints/"+id, bearer(key), `{"name":"patched"}`); r.status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if got := name(); got != "patched" {
		t.Fatalf("after PATCH the cache serves %q", got)
	}
	if r := e.do("DELETE", "/v1/endpoints/"+id, bearer(key), nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d", r.status)
	}
	if got := name(); got != "error: not found" {
		t.Fatalf("after DELETE the cache serves %q", got)
	}
}

func TestTenantAdministration(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/v1/tenants", admin, `{"name":"  Acme  "}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	created := r.json(t)
	tn, key := created["id"].(string), created["api_key"].(string)
	if created["name"] != "Acme" || !strings.HasPrefix(key, "hk_") || !strings.HasPrefix(tn, "tn_") {
		t.Fatalf("created %v", created)
	}
	other, otherKey := e.tenant("Other")
	otherEp := e.endpoint(otherKey, nil)["id"].(string)

	for _, body := range []string{`{"name":""}`, `{"name":"   "}`, `{}`, `{"name":"` + strings.Repeat("n", 201) + `"}`} {
		p := e.do("POST", "/v1/tenants", admin, body).problem(t, http.StatusUnprocessableEntity)
		if !slices.Equal(p.fields(), []string{"name"}) {
			t.Fatalf("%s: errors %v", body, p.fields())
		}
	}
	e.do("POST", "/v1/tenants", admin, `{"nmae":"x"}`).problem(t, http.StatusBadRequest)
	e.do("POST", "/v1/tenants", admin, `{"name":1}`).problem(t, http.StatusBadRequest)

	list := e.do("GET", "/v1/tenants", admin, nil)
	if bytes.Contains(list.body, []byte("api_key")) || bytes.Contains(list.body, []byte(key)) {
		t.Fatalf("tenant list shows keys: %s", list.body)
	}
	if items := list.json(t)["data"].([]any); len(items) != 2 {
		t.Fatalf("tenant list %v", items)
	}
	g := e.do("GET", "/v1/tenants/"+tn, admin, nil)
	if g.status != http.StatusOK || g.json(t)["name"] != "Acme" || bytes.Contains(g.body, []byte("api_key")) {
		t.Fatalf("get tenant: %d %s", g.status, g.body)
	}
	e.do("GET", "/v1/tenants/tn_missing", admin, nil).problem(t, http.StatusNotFound)

	r = e.do("PATCH", "/v1/tenants/"+tn, admin, `{"name":"Acme Corp"}`)
	if r.status != http.StatusOK || r.json(t)["name"] != "Acme Corp" {
		t.Fatalf("rename: %d %s", r.status, r.body)
	}
	e.do("PATCH", "/v1/tenants/"+tn, admin, `{"name":""}`).problem(t, http.StatusUnprocessableEntity)
	e.do("PATCH", "/v1/tenants/tn_missing", admin, `{"name":"x"}`).problem(t, http.StatusNotFound)
	if got := e.do("GET", "/v1/tenants/"+tn, admin, nil).json(t)["name"]; got != "Acme Corp" {
		t.Fatalf("name after refused rename %v", got)
	}

	// Keys.
	keys := e.do("GET", "/v1/tenants/"+tn+"/keys", admin, nil)
	items := keys.json(t)["data"].([]any)
	if len(items) != 1 || bytes.Contains(keys.body, []byte(`"key"`)) || !strings.HasPrefix(key, items[0].(map[string]any)["prefix"].(string)) {
		t.Fatalf("keys %s", keys.body)
	}
	r = e.do("POST", "/v1/tenants/"+tn+"/keys", admin, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("create key: %d %s", r.status, r.body)
	}
	newKey := r.json(t)
	key2, key2ID := newKey["key"].(string), newKey["id"].(string)
	if !strings.HasPrefix(key2, "hk_") || key2 == key {
		t.Fatalf("new key %v", newKey)
	}
	if r := e.do("GET", "/v1/endpoints", bearer(key2), nil); r.status != http.StatusOK {
		t.Fatalf("new key refused: %d", r.status)
	}
	if n := len(e.do("GET", "/v1/tenants/"+tn+"/keys", admin, nil).json(t)["data"].([]any)); n != 2 {
		t.Fatalf("%d keys listed, want 2", n)
	}
	if r := e.do("DELETE", "/v1/tenants/"+tn+"/keys/"+key2ID, admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	e.do("GET", "/v1/endpoints", bearer(key2), nil).problem(t, http.StatusUnauthorized)
	if r := e.do("GET", "/v1/endpoints", bearer(key), nil); r.status != http.StatusOK {
		t.Fatalf("remaining key refused after revoking the other: %d", r.status)
	}
	e.do("DELETE", "/v1/tenants/"+tn+"/keys/"+key2ID, admin, nil).problem(t, http.StatusNotFound)
	// The last key is kept: a tenant always has one.
	firstID := items[0].(map[string]any)["id"].(string)
	e.do("DELETE", "/v1/tenants/"+tn+"/keys/"+firstID, admin, nil).problem(t, http.StatusConflict)
	if r := e.do("GET", "/v1/endpoints", bearer(key), nil); r.status != http.StatusOK {
		t.Fatalf("last key refused after a refused revoke: %d", r.status)
	}
	e.do("DELETE", "/v1/tenants/"+other+"/keys/"+key2ID, admin, nil).problem(t, http.StatusNotFound)
	e.do("GET", "/v1/tenants/tn_missing/keys", admin, nil).problem(t, http.StatusNotFound)
	e.do("POST", "/v1/tenants/tn_missing/keys", admin, nil).problem(t, http.StatusNotFound)

	// Deleting the tenant stops its key at once and removes its endpoints.
	e.endpoint(key, nil)
	e.endpoint(key, nil)
	if r := e.do("GET", "/v1/endpoints", bearer(key), nil); r.status != http.StatusOK {
		t.Fatalf("key before delete: %d", r.status) // and now in the API's key cache
	}
	if r := e.do("DELETE", "/v1/tenants/"+tn, admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete tenant: %d %s", r.status, r.body)
	}
	e.do("GET", "/v1/endpoints", bearer(key), nil).problem(t, http.StatusUnauthorized)
	e.do("POST", "/v1/events", bearer(key), `{"type":"t","data":1}`).problem(t, http.StatusUnauthorized)
	if eps, _ := e.st.ListEndpoints(testCtx(t), tn); len(eps) != 0 {
		t.Fatalf("endpoints of the deleted tenant remain: %d", len(eps))
	}
	e.do("GET", "/v1/tenants/"+tn, admin, nil).problem(t, http.StatusNotFound)
	e.do("DELETE", "/v1/tenants/"+tn, admin, nil).problem(t, http.StatusNotFound)
	// The other tenant is untouched.
	if r := e.do("GET", "/v1/endpoints/"+otherEp, bearer(otherKey), nil); r.status != http.StatusOK {
		t.Fatalf("other tenant after delete: %d %s", r.status, r.body)
	}
}
