package api_test

// Handler tests of the management API added for the settings page:
// pagination, API keys, event types, secret rotation, test sends, attempt
// history and event views, each against real NATS and Redis, with the
// cross-tenant 404s.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/verify"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

const mgmtAdmin = "Bearer mgmt-admin-token-0123456789"

// mgmt is the API over real JetStream and Redis with the history projector
// running, plus a receiver that records what it gets.
type mgmt struct {
	t   *testing.T
	srv *httptest.Server
	api *api.Server
	js  jetstream.JetStream
	rcv *receiver
}

type received struct {
	method string
	header http.Header
	body   []byte
}

// receiver answers status with body and records every request.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	status int
	body   string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{status: 200, body: `{"ok":true}`}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Method, r.Header.Clone(), b})
		status, body := rc.status, rc.body
		rc.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) set(status int, body string) {
	rc.mu.Lock()
	rc.status, rc.body = status, body
	rc.mu.Unlock()
}

func (rc *receiver) last(t *testing.T) received {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) == 0 {
		t.Fatal("the receiver got nothing")
	}
	return rc.got[len(rc.got)-1]
}

func newMgmt(t *testing.T, opts ...api.Option) *mgmt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := testenv.JetStream(t)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	url, prefix := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	idx := history.NewRedis(rdb, prefix, time.Hour)
	runCtx, stop := context.WithCancel(context.Background())
	proj := history.NewProjector(js, idx, history.WithLogger(testenv.Logger(t)))
	done := make(chan struct{})
	go func() { _ = proj.Run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	<-proj.Ready()
	c := cache.New(st, st.KV(), cache.WithRedis(rdb, prefix))
	a := api.New(st, ingest.New(js), append([]api.Option{
		api.WithAdminToken(strings.TrimPrefix(mgmtAdmin, "Bearer ")),
		api.WithInvalidator(c),
		api.WithLogger(testenv.Logger(t)),
		api.WithHistory(history.NewReader(idx, js)),
		api.WithDeliverClient(deliver.New()),
	}, opts...)...)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &mgmt{t: t, srv: srv, api: a, js: js, rcv: newReceiver(t)}
}

// waitFor polls cond until it holds, for what the history projects.
func (m *mgmt) waitFor(cond func() bool) {
	m.t.Helper()
	testenv.Eventually(m.t, 10*time.Second, cond, "condition not met")
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (m *mgmt) call(method, path, auth string, body any) reply {
	m.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, m.srv.URL+path, rd)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := m.srv.Client().Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

// ok checks the status and decodes the JSON body into a map.
func (r reply) ok(t *testing.T, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var v map[string]any
	if len(r.body) > 0 {
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
	}
	return v
}

// fails checks r is a problem document with status and, for 422, exactly
// the invalid fields named.
func (r reply) fails(t *testing.T, status int, fields ...string) {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d (%s), want a %d problem: %s", r.status, r.header.Get("Content-Type"), status, r.body)
	}
	var p struct {
		Status int `json:"status"`
		Errors []struct{ Field, Message string }
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != status {
		t.Fatalf("problem %s: %v", r.body, err)
	}
	var got []string
	for _, e := range p.Errors {
		got = append(got, e.Field)
	}
	slices.Sort(got)
	slices.Sort(fields)
	if !slices.Equal(got, fields) {
		t.Fatalf("invalid fields %v, want %v: %s", got, fields, r.body)
	}
}

func (m *mgmt) tenant(name string) (id, auth string) {
	m.t.Helper()
	v := m.call("POST", "/v1/tenants", mgmtAdmin, map[string]any{"name": name}).ok(m.t, 201)
	return v["id"].(string), "Bearer " + v["api_key"].(string)
}

func (m *mgmt) endpoint(auth string, fields map[string]any) map[string]any {
	m.t.Helper()
	body := map[string]any{"name": "hook", "url": m.rcv.URL + "/hook", "events": []string{"post.*"}}
	for k, v := range fields {
		body[k] = v
	}
	return m.call("POST", "/v1/endpoints", auth, body).ok(m.t, 201)
}

// pages follows next_cursor from path and returns every item's key field.
func (m *mgmt) pages(path, auth, key string, limit int) (items []string, pages int) {
	m.t.Helper()
	cursor := ""
	for {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		q := fmt.Sprintf("%s%slimit=%d", path, sep, limit)
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		v := m.call("GET", q, auth, nil).ok(m.t, 200)
		pages++
		for _, it := range v["data"].([]any) {
			items = append(items, it.(map[string]any)[key].(string))
		}
		next, _ := v["next_cursor"].(string)
		if next == "" {
			if v["next_cursor"] != nil {
				m.t.Fatalf("next_cursor %v, want null", v["next_cursor"])
			}
			return items, pages
		}
		cursor = next
	}
}

func TestMgmtListsPaginate(t *testing.T) {
	m := newMgmt(t)
	var tenants []string
	for i := range 5 {
		id, _ := m.tenant(fmt.Sprintf("t%d", i))
		tenants = append(tenants, id)
	}
	got, pages := m.pages("/v1/tenants", mgmtAdmin, "id", 2)
	for _, id := range tenants {
		if !slices.Contains(got, id) {
			t.Fatalf("tenant %s missing from the pages %v", id, got)
		}
	}
	if !slices.IsSorted(got) || pages < 3 {
		t.Fatalf("tenants %v in %d pages", got, pages)
	}
	_, auth := m.tenant("lists")
	var eps []string
	for range 5 {
		eps = append(eps, m.endpoint(auth, nil)["id"].(string))
	}
	if got, pages := m.pages("/v1/endpoints", auth, "id", 2); !slices.Equal(got, eps) || pages != 3 {
		t.Fatalf("endpoints %v in %d pages, want %v in 3", got, pages, eps)
	}
	for _, p := range []string{"/v1/endpoints", "/v1/event-types", "/v1/endpoints/" + eps[0] + "/attempts"} {
		m.call("GET", p+"?limit=0", auth, nil).fails(t, 422, "limit")
		m.call("GET", p+"?limit=101", auth, nil).fails(t, 422, "limit")
		m.call("GET", p+"?limit=x&cursor=%21%21", auth, nil).fails(t, 422, "cursor", "limit")
	}
	m.call("GET", "/v1/tenants?cursor=bm9wZQ", mgmtAdmin, nil).fails(t, 422, "cursor")
	if v := m.call("GET", "/v1/endpoints", auth, nil).ok(t, 200); len(v["data"].([]any)) != 5 || v["next_cursor"] != nil {
		t.Fatalf("default page: %v", v)
	}
}

func TestMgmtAPIKeys(t *testing.T) {
	m := newMgmt(t)
	tn, auth := m.tenant("keys")
	other, otherAuth := m.tenant("other")
	k := m.call("POST", "/v1/tenants/"+tn+"/keys", mgmtAdmin, nil).ok(t, 201)
	second := "Bearer " + k["key"].(string)
	m.call("GET", "/v1/endpoints", second, nil).ok(t, 200)
	list := m.call("GET", "/v1/tenants/"+tn+"/keys", mgmtAdmin, nil)
	v := list.ok(t, 200)
	if keys := v["data"].([]any); len(keys) != 2 || bytes.Contains(list.body, []byte(k["key"].(string))) || bytes.Contains(list.body, []byte("hash")) {
		t.Fatalf("key listing shows more than prefixes: %s", list.body)
	}
	// another tenant's key id is not found under this tenant
	ok := m.call("GET", "/v1/tenants/"+other+"/keys", mgmtAdmin, nil).ok(t, 200)
	otherKey := ok["data"].([]any)[0].(map[string]any)["id"].(string)
	m.call("DELETE", "/v1/tenants/"+tn+"/keys/"+otherKey, mgmtAdmin, nil).fails(t, 404)
	m.call("GET", "/v1/endpoints", otherAuth, nil).ok(t, 200)
	// tenant keys cannot manage tenants
	m.call("GET", "/v1/tenants", auth, nil).fails(t, 401)
	m.call("DELETE", "/v1/tenants/"+tn+"/keys/"+k["id"].(string), mgmtAdmin, nil).ok(t, 204)
	m.call("GET", "/v1/endpoints", second, nil).fails(t, 401)
	// the last key stays
	m.call("DELETE", "/v1/tenants/"+other+"/keys/"+otherKey, mgmtAdmin, nil).fails(t, 409)
	m.call("GET", "/v1/endpoints", otherAuth, nil).ok(t, 200)
	m.call("POST", "/v1/tenants/tn_nope/keys", mgmtAdmin, nil).fails(t, 404)
}

func TestMgmtEventTypes(t *testing.T) {
	m := newMgmt(t)
	_, auth := m.tenant("catalog")
	_, otherAuth := m.tenant("other")
	created := m.call("POST", "/v1/event-types", auth, map[string]any{
		"name": "post.published", "description": "A post went live.", "example": map[string]any{"id": "42"}})
	v := created.ok(t, 201)
	if created.header.Get("Location") != "/v1/event-types/post.published" || v["description"] != "A post went live." {
		t.Fatalf("created %v %v", created.header, v)
	}
	m.call("POST", "/v1/event-types", auth, map[string]any{"name": "post.published"}).fails(t, 409)
	m.call("POST", "/v1/event-types", auth, map[string]any{"name": "post.*", "example": "x", "description": strings.Repeat("d", 2001)}).fails(t, 422, "description", "name")
	m.call("POST", "/v1/event-types", auth, map[string]any{}).fails(t, 422, "name")
	m.call("POST", "/v1/event-types", auth, map[string]any{"name": "a.b", "schema": 1}).fails(t, 400)
	m.call("POST", "/v1/event-types", auth, `{"name":"a.b","example":{"x":}`).fails(t, 400)
	for _, n := range []string{"member.added", "content.generated", "publishing.failed"} {
		m.call("POST", "/v1/event-types", auth, map[string]any{"name": n}).ok(t, 201)
	}
	if got, pages := m.pages("/v1/event-types", auth, "name", 3); !slices.Equal(got, []string{"content.generated", "member.added", "post.published", "publishing.failed"}) || pages != 2 {
		t.Fatalf("catalog %v in %d pages", got, pages)
	}
	got := m.call("GET", "/v1/event-types/post.published", auth, nil).ok(t, 200)
	if ex, _ := json.Marshal(got["example"]); string(ex) != `{"id":"42"}` {
		t.Fatalf("example %s", ex)
	}
	m.call("PATCH", "/v1/event-types/post.published", auth, map[string]any{"name": "x"}).fails(t, 400)
	p := m.call("PATCH", "/v1/event-types/post.published", auth, map[string]any{"description": "changed", "example": nil}).ok(t, 200)
	if p["description"] != "changed" || p["example"] != nil {
		t.Fatalf("patched %v", p)
	}
	// another tenant sees none of it
	m.call("GET", "/v1/event-types/post.published", otherAuth, nil).fails(t, 404)
	m.call("PATCH", "/v1/event-types/post.published", otherAuth, map[string]any{"description": "x"}).fails(t, 404)
	m.call("DELETE", "/v1/event-types/post.published", otherAuth, nil).fails(t, 404)
	if v := m.call("GET", "/v1/event-types", otherAuth, nil).ok(t, 200); len(v["data"].([]any)) != 0 {
		t.Fatalf("other tenant lists %v", v)
	}
	m.call("DELETE", "/v1/event-types/post.published", auth, nil).ok(t, 204)
	m.call("GET", "/v1/event-types/post.published", auth, nil).fails(t, 404)
	// endpoints may subscribe to types not in the catalog
	m.endpoint(auth, map[string]any{"events": []string{"not.in.catalog"}})
}

func TestMgmtSecretRotation(t *testing.T) {
	m := newMgmt(t)
	_, auth := m.tenant("rotate")
	_, otherAuth := m.tenant("other")
	ep := m.endpoint(auth, nil)
	id, first := ep["id"].(string), ep["secret"].(string)
	s := m.call("GET", "/v1/endpoints/"+id+"/secret", auth, nil).ok(t, 200)
	if s["secret"] != first || len(s["old_secrets"].([]any)) != 0 || !strings.HasPrefix(first, "whsec_") {
		t.Fatalf("secret %v", s)
	}
	m.call("GET", "/v1/endpoints/"+id+"/secret", otherAuth, nil).fails(t, 404)
	m.call("POST", "/v1/endpoints/"+id+"/secret/rotate", otherAuth, nil).fails(t, 404)
	m.call("POST", "/v1/endpoints/"+id+"/secret/rotate", auth, map[string]any{"grace_period_seconds": -1}).fails(t, 422, "grace_period_seconds")
	m.call("POST", "/v1/endpoints/"+id+"/secret/rotate", auth, map[string]any{"grace_period_seconds": 2592001, "secret": ""}).fails(t, 422, "grace_period_seconds", "secret")
	m.call("POST", "/v1/endpoints/"+id+"/secret/rotate", auth, map[string]any{"secret": "not-a-secret"}).fails(t, 422, "secret")
	m.call("POST", "/v1/endpoints/"+id+"/secret/rotate", auth, map[string]any{"grace": 1}).fails(t, 400)

	before := time.Now()
	r := m.call("POST", "/v1/endpoints/"+id+"/secret/rotate", auth, nil).ok(t, 200)
	second := r["secret"].(string)
	olds := r["old_secrets"].([]any)
	if second == first || !strings.HasPrefix(second, "whsec_") || len(olds) != 1 || bytes.Contains([]byte(fmt.Sprint(r)), []byte(first)) {
		t.Fatalf("rotated %v", r)
	}
	exp, _ := time.Parse(time.RFC3339Nano, olds[0].(map[string]any)["expires_at"].(string))
	if d := exp.Sub(before); d < 24*time.Hour-time.Minute || d > 24*time.Hour+time.Minute {
		t.Fatalf("old secret expires in %s, want 24h", d)
	}
	// Requests are signed with both: a receiver on either secret accepts.
	res := m.call("POST", "/v1/endpoints/"+id+"/test", auth, nil).ok(t, 200)
	if res["ok"] != true {
		t.Fatalf("test send %v", res)
	}
	got := m.rcv.last(t)
	for _, secret := range []string{first, second} {
		if err := verify.Verify(sign.Standard, got.header, got.body, []string{secret}); err != nil {
			t.Fatalf("not signed with %.12s...: %v (%s)", secret, err, got.header.Get("webhook-signature"))
		}
	}
	// A given secret, and no grace: the previous one stops at once.
	third, _ := sign.GenerateSecret(sign.Standard)
	r = m.call("POST", "/v1/endpoints/"+id+"/secret/rotate", auth, map[string]any{"secret": third, "grace_period_seconds": 0}).ok(t, 200)
	if r["secret"] != third || len(r["old_secrets"].([]any)) != 1 {
		t.Fatalf("rotated %v (the first rotation's old secret stays in its grace)", r)
	}
	m.call("POST", "/v1/endpoints/"+id+"/test", auth, nil).ok(t, 200)
	got = m.rcv.last(t)
	if verify.Verify(sign.Standard, got.header, got.body, []string{second}) == nil {
		t.Fatal("the secret rotated away without grace still signs")
	}
	if err := verify.Verify(sign.Standard, got.header, got.body, []string{third}); err != nil {
		t.Fatal(err)
	}
	// unsigned endpoints have nothing to rotate
	none := m.endpoint(auth, map[string]any{"signature": "none"})
	m.call("POST", "/v1/endpoints/"+none["id"].(string)+"/secret/rotate", auth, nil).fails(t, 409)
}

func TestMgmtTestSend(t *testing.T) {
	m := newMgmt(t)
	_, auth := m.tenant("test-send")
	_, otherAuth := m.tenant("other")
	ep := m.endpoint(auth, map[string]any{"method": "PUT", "headers": map[string]string{"X-Custom": "1"}})
	id := ep["id"].(string)
	m.rcv.set(201, strings.Repeat("b", 3000))
	res := m.call("POST", "/v1/endpoints/"+id+"/test", auth, nil).ok(t, 200)
	if res["ok"] != true || res["response_status"] != float64(201) || res["event_type"] != "webhook.test" ||
		len(res["response_body"].(string)) != 1024 || res["test"] != true || res["status"] != "succeeded" || res["attempt"] != float64(1) {
		t.Fatalf("test result %v", res)
	}
	if _, ok := res["latency_ms"].(float64); !ok {
		t.Fatalf("no latency in %v", res)
	}
	got := m.rcv.last(t)
	if got.method != "PUT" || got.header.Get("X-Custom") != "1" || got.header.Get("webhook-id") != res["event_id"] {
		t.Fatalf("request %s %v", got.method, got.header)
	}
	if err := verify.Verify(sign.Standard, got.header, got.body, []string{ep["secret"].(string)}); err != nil {
		t.Fatal(err)
	}
	var env struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(got.body, &env); err != nil || env.Type != "webhook.test" {
		t.Fatalf("body %s", got.body)
	}

	// The catalog's example is the default data of a named type.
	m.call("POST", "/v1/event-types", auth, map[string]any{"name": "post.published", "example": map[string]any{"title": "Hello"}}).ok(t, 201)
	m.call("POST", "/v1/endpoints/"+id+"/test", auth, map[string]any{"event_type": "post.published"}).ok(t, 200)
	if got := m.rcv.last(t); !bytes.Contains(got.body, []byte(`"data":{"title":"Hello"}`)) {
		t.Fatalf("body %s", got.body)
	}
	m.call("POST", "/v1/endpoints/"+id+"/test", auth, map[string]any{"event_type": "x", "data": map[string]any{"a": 1}}).ok(t, 200)
	if got := m.rcv.last(t); !bytes.Contains(got.body, []byte(`"data":{"a":1}`)) {
		t.Fatalf("body %s", got.body)
	}

	// A failing receiver: 200 with ok false and the receiver's answer.
	m.rcv.set(500, "boom")
	res = m.call("POST", "/v1/endpoints/"+id+"/test", auth, nil).ok(t, 200)
	if res["ok"] != false || res["response_status"] != float64(500) || res["error_class"] != "server_error" || res["response_body"] != "boom" || res["error"] == "" {
		t.Fatalf("failed test %v", res)
	}
	// An unreachable one.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	dead := m.endpoint(auth, map[string]any{"url": closed.URL, "enabled": false})
	res = m.call("POST", "/v1/endpoints/"+dead["id"].(string)+"/test", auth, nil).ok(t, 200)
	if res["ok"] != false || res["response_status"] != float64(0) || res["error_class"] != "connection" {
		t.Fatalf("unreachable test %v", res)
	}

	m.call("POST", "/v1/endpoints/"+id+"/test", auth, map[string]any{"event_type": "bad type", "data": nil}).fails(t, 422, "data", "event_type")
	m.call("POST", "/v1/endpoints/"+id+"/test", auth, map[string]any{"unknown": 1}).fails(t, 400)
	m.call("POST", "/v1/endpoints/"+id+"/test", otherAuth, nil).fails(t, 404)
	m.call("POST", "/v1/endpoints/ep_nope/test", auth, nil).fails(t, 404)

	// Every test attempt is in the endpoint's history, marked test.
	var v map[string]any
	testenv.Eventually(t, 10*time.Second, func() bool {
		v = m.call("GET", "/v1/endpoints/"+id+"/attempts", auth, nil).ok(t, 200)
		return len(v["data"].([]any)) == 4
	}, "test attempts not in the history")
	// Newest first; the failing send was the last. Two sends in the same
	// millisecond may list in either order, so find it among those that
	// share the newest time.
	data := v["data"].([]any)
	newest := data[0].(map[string]any)["at"]
	var last map[string]any
	for i, a := range data {
		a := a.(map[string]any)
		if a["test"] != true {
			t.Fatalf("attempt %d not marked test: %v", i, a)
		}
		at, _ := time.Parse(time.RFC3339Nano, a["at"].(string))
		prev, _ := time.Parse(time.RFC3339Nano, data[max(i-1, 0)].(map[string]any)["at"].(string))
		if at.After(prev) {
			t.Fatalf("attempts not newest first: %v", data)
		}
		if a["response_status"] == float64(500) {
			last = a
		}
	}
	if last == nil || last["at"] != newest || last["response_body"] != "boom" {
		t.Fatalf("the failing send is not the newest attempt: %v", data)
	}
	failed := m.call("GET", "/v1/endpoints/"+id+"/attempts?status=failed", auth, nil).ok(t, 200)
	if len(failed["data"].([]any)) != 1 {
		t.Fatalf("failed attempts %v", failed)
	}
}

func TestMgmtAttemptsAndEvents(t *testing.T) {
	m := newMgmt(t)
	tn, auth := m.tenant("history")
	_, otherAuth := m.tenant("other")
	ep := m.endpoint(auth, map[string]any{"events": []string{"*"}})["id"].(string)
	pending := m.endpoint(auth, map[string]any{"events": []string{"post.published"}})["id"].(string)
	m.endpoint(auth, map[string]any{"events": []string{"member.*"}}) // not matching

	evID := "post/42"
	m.call("POST", "/v1/events", auth, map[string]any{"type": "post.published", "id": evID, "data": map[string]any{"id": "42"}}).ok(t, 202)
	now := time.Now()
	for i := range 5 {
		a := &heraldv1.Attempt{JobId: "job_1", EventId: evID, TenantId: tn, EndpointId: ep, Number: uint32(i + 1),
			AtUnixMs: now.Add(time.Duration(i) * time.Second).UnixMilli(), StatusCode: 500, ErrorClass: "server_error",
			Error: "status 500", EventType: "post.published", State: "retrying", NextAttemptAtUnixMs: now.Add(time.Hour).UnixMilli()}
		if i == 4 {
			a.StatusCode, a.ErrorClass, a.Error, a.State, a.NextAttemptAtUnixMs = 200, "none", "", "delivered", 0
		}
		b, _ := proto.Marshal(a)
		if _, err := m.js.Publish(context.Background(), bus.AttemptSubject(tn, ep), b); err != nil {
			t.Fatal(err)
		}
	}
	var v map[string]any
	testenv.Eventually(t, 10*time.Second, func() bool {
		r := m.call("GET", "/v1/events/"+url.PathEscape(evID), auth, nil)
		if r.status != 200 {
			return false
		}
		v = r.ok(t, 200)
		ds := v["deliveries"].([]any)
		return len(ds) == 2 && len(ds[0].(map[string]any)["attempts"].([]any))+len(ds[1].(map[string]any)["attempts"].([]any)) == 5
	}, "event view incomplete")
	if v["type"] != "post.published" || v["accepted_at"] == nil || fmt.Sprint(v["data"]) != "map[id:42]" {
		t.Fatalf("event %v", v)
	}
	states := map[string]string{}
	for _, d := range v["deliveries"].([]any) {
		d := d.(map[string]any)
		states[d["endpoint_id"].(string)] = d["state"].(string)
	}
	if states[ep] != "delivered" || states[pending] != "pending" {
		t.Fatalf("states %v", states)
	}
	m.call("GET", "/v1/events/"+url.PathEscape(evID), otherAuth, nil).fails(t, 404)
	m.call("GET", "/v1/events/unknown", auth, nil).fails(t, 404)

	// attempts: newest first, paginated, filtered
	got, pages := m.pages("/v1/endpoints/"+ep+"/attempts", auth, "id", 2)
	if len(got) != 5 || pages != 3 {
		t.Fatalf("%d attempts in %d pages", len(got), pages)
	}
	all := m.call("GET", "/v1/endpoints/"+ep+"/attempts", auth, nil).ok(t, 200)["data"].([]any)
	if all[0].(map[string]any)["attempt"] != float64(5) || all[4].(map[string]any)["attempt"] != float64(1) {
		t.Fatalf("not newest first: %v", all)
	}
	if f, _ := m.pages("/v1/endpoints/"+ep+"/attempts?status=failed", auth, "id", 10); len(f) != 4 {
		t.Fatalf("failed %v", f)
	}
	if s, _ := m.pages("/v1/endpoints/"+ep+"/attempts?status=succeeded", auth, "id", 10); len(s) != 1 {
		t.Fatalf("succeeded %v", s)
	}
	m.call("GET", "/v1/endpoints/"+ep+"/attempts?status=ok", auth, nil).fails(t, 422, "status")
	m.call("GET", "/v1/endpoints/"+ep+"/attempts?cursor=abc", auth, nil).fails(t, 422, "cursor")
	m.call("GET", "/v1/endpoints/"+ep+"/attempts", otherAuth, nil).fails(t, 404)
}

// Each endpoint rule, on create and on PATCH (which validates the result).
func TestMgmtEndpointValidation(t *testing.T) {
	m := newMgmt(t)
	_, auth := m.tenant("validation")
	id := m.endpoint(auth, nil)["id"].(string)
	for _, c := range []struct {
		field string
		value any
	}{
		{"url", "ftp://example.com/x"},
		{"url", "https://user:pw@example.com/"},
		{"events", []string{"post*"}},
		{"method", "DELETE"},
		{"content_type", "application/xml"},
		{"headers", map[string]string{"Content-Length": "1"}},
		{"headers", map[string]string{"Connection": "close"}},
		{"headers", map[string]string{"Transfer-Encoding": "chunked"}},
		{"headers", map[string]string{"X-Ok": "a\r\nb"}},
		{"max_attempts", 0},
		{"timeout_ms", 30001},
		{"timeout_ms", 0},
		{"rate_limit", -1},
		{"payload_format", "xml"},
	} {
		r := m.call("PATCH", "/v1/endpoints/"+id, auth, map[string]any{c.field: c.value})
		if r.status != 422 || !bytes.Contains(r.body, []byte(`"field":"`+c.field)) {
			t.Errorf("PATCH %s=%v: %d %s", c.field, c.value, r.status, r.body)
		}
		body := map[string]any{"name": "n", "url": "https://example.com/", "events": []string{"*"}, c.field: c.value}
		if r := m.call("POST", "/v1/endpoints", auth, body); r.status != 422 || !bytes.Contains(r.body, []byte(`"field":"`+c.field)) {
			t.Errorf("POST %s=%v: %d %s", c.field, c.value, r.status, r.body)
		}
	}
	m.call("PATCH", "/v1/endpoints/"+id, auth, map[string]any{"events": []string{}}).fails(t, 422, "events")
	// defaults
	v := m.call("GET", "/v1/endpoints/"+id, auth, nil).ok(t, 200)
	if v["method"] != "POST" || v["content_type"] != "application/json" || v["max_attempts"] != float64(5) || v["timeout_ms"] != float64(10000) || v["rate_limit"] != float64(0) || v["enabled"] != true {
		t.Fatalf("defaults %v", v)
	}
	// every field at once, then a subset
	full := m.call("PATCH", "/v1/endpoints/"+id, auth, map[string]any{"name": "n2", "description": "d", "method": "PATCH",
		"content_type": "application/x-www-form-urlencoded", "headers": map[string]string{"X-A": "1"}, "max_attempts": 20,
		"timeout_ms": 30000, "rate_limit": 5, "metadata": map[string]string{"k": "v"}, "enabled": false}).ok(t, 200)
	if full["method"] != "PATCH" || full["rate_limit"] != float64(5) || full["enabled"] != false || full["description"] != "d" {
		t.Fatalf("patched %v", full)
	}
	if v := m.call("PATCH", "/v1/endpoints/"+id, auth, map[string]any{"enabled": true}).ok(t, 200); v["method"] != "PATCH" || v["enabled"] != true {
		t.Fatalf("subset patch changed more: %v", v)
	}
}
