package api_test

// Tests of the dead-letter routes over a real JetStream. Helpers here are
// prefixed dq so they never collide with the other API tests' helpers.

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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/router"
	"github.com/heraldhq/herald/pkg/sender"
	"github.com/heraldhq/herald/pkg/session"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

type dqEnv struct {
	t   *testing.T
	ctx context.Context
	js  jetstream.JetStream
	st  *store.Store
	c   *cache.Cache
	srv *httptest.Server
}

// newDQEnv serves the API with the dead-letter service over a real
// JetStream; with pipeline, a router and a sender run too.
func newDQEnv(t *testing.T, pipeline bool, opts ...api.Option) *dqEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	js := testenv.JetStream(t)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	log := testenv.Logger(t)
	c := cache.New(st, st.KV())
	svc, err := dlq.New(ctx, js, c, dlq.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(ctx) }()
	}
	run(c.Run)
	run(svc.Run)
	testenv.Eventually(t, 5*time.Second, c.Ready, "cache watch not running")
	if pipeline {
		run(router.New(js, c, router.WithLogger(log)).Run)
		run(sender.New(js, c, sender.WithLogger(log), sender.WithDisabler(st),
			sender.WithSchedule(retry.Schedule{50 * time.Millisecond, 50 * time.Millisecond})).Run)
	}
	idx := history.NewMemory(time.Hour)
	proj := history.NewProjector(js, idx, history.WithLogger(log))
	run(proj.Run)
	srv := httptest.NewServer(api.New(st, ingest.New(js), append([]api.Option{api.WithInvalidator(c), api.WithDLQ(svc), api.WithLogger(log),
		api.WithHistory(history.NewReader(idx, js))}, opts...)...))
	t.Cleanup(srv.Close)
	return &dqEnv{t: t, ctx: ctx, js: js, st: st, c: c, srv: srv}
}

func (e *dqEnv) tenant() (id, key string) {
	e.t.Helper()
	tn, key, err := e.st.CreateTenant(e.ctx, "t")
	if err != nil {
		e.t.Fatal(err)
	}
	return tn.ID, key
}

// call sends a request with the tenant key and decodes a 2xx answer into
// out; it returns the status and the raw body.
func (e *dqEnv) call(method, path, key string, body any, out any) (int, []byte, http.Header) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.(string)
		if !ok {
			j, err := json.Marshal(body)
			if err != nil {
				e.t.Fatal(err)
			}
			b = string(j)
		}
		rd = bytes.NewReader([]byte(b))
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, b, resp.Header
}

func (e *dqEnv) must(want int, method, path, key string, body, out any) http.Header {
	e.t.Helper()
	status, b, h := e.call(method, path, key, body, out)
	if status != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, status, b, want)
	}
	return h
}

// problemFields checks a problem answer and returns the invalid fields.
func (e *dqEnv) problemFields(want int, method, path, key string, body any) []string {
	e.t.Helper()
	status, b, h := e.call(method, path, key, body, nil)
	if status != want || h.Get("Content-Type") != "application/problem+json" {
		e.t.Fatalf("%s %s: %d %s (%s), want a %d problem", method, path, status, b, h.Get("Content-Type"), want)
	}
	var p struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	_ = json.Unmarshal(b, &p)
	var out []string
	for _, f := range p.Errors {
		out = append(out, f.Field)
	}
	slices.Sort(out)
	return out
}

func (e *dqEnv) dead(tenant, ep, eventID string) uint64 {
	e.t.Helper()
	job := &heraldv1.DeliveryJob{Id: event.JobID(tenant, eventID, ep), TenantId: tenant, EndpointId: ep,
		Event: &heraldv1.Event{Id: eventID, TenantId: tenant, Type: "post.published", Data: []byte(`{}`), AcceptedAtUnixMs: time.Now().UnixMilli()}}
	b, _ := proto.Marshal(&heraldv1.DeadLetter{Job: job, Reason: "attempt budget of 5 used", DeadAtUnixMs: time.Now().UnixMilli()})
	ack, err := e.js.Publish(e.ctx, bus.DLQSubject(tenant, ep), b)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

func (e *dqEnv) waitReplay(path, key string) dlq.Replay {
	e.t.Helper()
	var r dlq.Replay
	testenv.Eventually(e.t, 15*time.Second, func() bool {
		status, _, _ := e.call("GET", path, key, nil, &r)
		return status == http.StatusOK && r.State != dlq.StateRunning
	}, "replay %s did not finish: %+v", path, &r)
	return r
}

func TestDLQRoutesTenantIsolationAndValidation(t *testing.T) {
	t.Parallel()
	e := newDQEnv(t, false)
	a, keyA := e.tenant()
	b, keyB := e.tenant()
	epA, err := e.st.CreateEndpoint(e.ctx, a, store.Endpoint{Name: "a", URL: "http://127.0.0.1:9/", Events: []string{"*"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	s1, s2, s3 := e.dead(a, epA.ID, "e1"), e.dead(a, epA.ID, "e2"), e.dead(a, epA.ID, "e3")

	var page struct {
		Data       []dlq.Entry `json:"data"`
		NextCursor *string     `json:"next_cursor"`
	}
	e.must(200, "GET", "/v1/dlq?limit=2&endpoint_id="+epA.ID, keyA, nil, &page)
	if len(page.Data) != 2 || page.Data[0].ID != s1 || page.Data[1].ID != s2 || page.NextCursor == nil || page.Data[0].Event.ID != "e1" {
		t.Fatalf("first page %+v", page)
	}
	e.must(200, "GET", "/v1/dlq?limit=2&endpoint_id="+epA.ID+"&cursor="+url.QueryEscape(*page.NextCursor), keyA, nil, &page)
	if len(page.Data) != 1 || page.Data[0].ID != s3 || page.NextCursor != nil {
		t.Fatalf("last page %+v", page)
	}
	var raw map[string]any
	e.must(200, "GET", "/v1/dlq", keyB, nil, &raw)
	if d, ok := raw["data"].([]any); !ok || len(d) != 0 || raw["next_cursor"] != nil {
		t.Fatalf("b's dead letters: %v", raw)
	}
	var one dlq.Entry
	e.must(200, "GET", fmt.Sprintf("/v1/dlq/%d", s2), keyA, nil, &one)
	if one.ID != s2 || one.JobID == "" || one.EndpointID != epA.ID {
		t.Fatalf("entry %+v", one)
	}

	// Another tenant's ids are not found, whatever the route.
	e.problemFields(404, "GET", fmt.Sprintf("/v1/dlq/%d", s1), keyB, nil)
	e.problemFields(404, "POST", "/v1/dlq/replay", keyB, map[string]any{"id": s1})
	e.problemFields(404, "POST", "/v1/dlq/replay", keyB, map[string]any{"ids": []uint64{s1}})
	e.problemFields(404, "POST", "/v1/dlq/replay", keyB, map[string]any{"endpoint_id": epA.ID})
	e.problemFields(404, "POST", "/v1/endpoints/"+epA.ID+"/recover", keyB, map[string]any{"since": "2026-01-01T00:00:00Z"})
	e.problemFields(404, "GET", "/v1/dlq/abc", keyA, nil)
	e.problemFields(404, "POST", "/v1/events/nope/resend", keyA, nil)
	e.problemFields(401, "GET", "/v1/dlq", "", nil)

	// Malformed and invalid requests: every bad field named.
	if got := e.problemFields(422, "GET", "/v1/dlq?since=yesterday&limit=0&cursor=x", keyA, nil); !slices.Equal(got, []string{"cursor", "limit", "since"}) {
		t.Errorf("invalid list query: fields %v", got)
	}
	if got := e.problemFields(422, "POST", "/v1/dlq/replay", keyA, map[string]any{}); !slices.Equal(got, []string{"id"}) {
		t.Errorf("empty replay: fields %v", got)
	}
	if got := e.problemFields(422, "POST", "/v1/dlq/replay", keyA, map[string]any{"id": s1, "endpoint_id": epA.ID, "rate": 5000}); !slices.Equal(got, []string{"id", "rate"}) {
		t.Errorf("id and filter: fields %v", got)
	}
	// rate: 0 is refused, not taken for the default (left out, it is).
	if got := e.problemFields(422, "POST", "/v1/dlq/replay", keyA, map[string]any{"ids": []uint64{s1}, "rate": 0}); !slices.Equal(got, []string{"rate"}) {
		t.Errorf("replay at rate 0: fields %v", got)
	}
	if got := e.problemFields(422, "POST", "/v1/dlq/replay", keyA, map[string]any{"rate": 0}); !slices.Equal(got, []string{"id", "rate"}) {
		t.Errorf("empty replay at rate 0: fields %v", got)
	}
	if got := e.problemFields(422, "POST", "/v1/endpoints/"+epA.ID+"/recover", keyA, map[string]any{"since": "2026-01-01T00:00:00Z", "rate": 0}); !slices.Equal(got, []string{"rate"}) {
		t.Errorf("recover at rate 0: fields %v", got)
	}
	if got := e.problemFields(422, "POST", "/v1/endpoints/"+epA.ID+"/recover?since=2026-01-01T00:00:00Z&rate=0", keyA, nil); !slices.Equal(got, []string{"rate"}) {
		t.Errorf("recover at ?rate=0: fields %v", got)
	}
	e.problemFields(400, "POST", "/v1/dlq/replay", keyA, `{"idz": 1}`)
	e.problemFields(400, "POST", "/v1/dlq/replay", keyA, `{"id": 1, "id": 2}`)
	if got := e.problemFields(422, "POST", "/v1/endpoints/"+epA.ID+"/recover", keyA, nil); !slices.Equal(got, []string{"since"}) {
		t.Errorf("recover without since: fields %v", got)
	}

	// A replay answers 202 with where to follow it; only its tenant sees it.
	var rp dlq.Replay
	h := e.must(202, "POST", "/v1/dlq/replay", keyA, map[string]any{"ids": []uint64{s1, s3}, "rate": 100}, &rp)
	if rp.ID == "" || rp.State != dlq.StateRunning || rp.Total != 2 || h.Get("Location") != "/v1/dlq/replays/"+rp.ID {
		t.Fatalf("replay %+v, Location %q", rp, h.Get("Location"))
	}
	e.problemFields(404, "GET", h.Get("Location"), keyB, nil)
	rp = e.waitReplay(h.Get("Location"), keyA)
	if rp.State != dlq.StateDone || rp.Replayed != 2 {
		t.Fatalf("replay %+v", rp)
	}
	e.must(200, "GET", "/v1/dlq", keyA, nil, &page)
	if len(page.Data) != 1 || page.Data[0].ID != s2 {
		t.Fatalf("after replaying %d and %d: %+v", s1, s3, page.Data)
	}
	var list struct {
		Data []dlq.Replay `json:"data"`
	}
	e.must(200, "GET", "/v1/dlq/replays", keyA, nil, &list)
	if len(list.Data) != 1 || list.Data[0].ID != rp.ID {
		t.Fatalf("a's replays %+v", list)
	}
	e.must(200, "GET", "/v1/dlq/replays", keyB, nil, &list)
	if len(list.Data) != 0 {
		t.Fatalf("b's replays %+v", list)
	}
	_ = b
}

// dqReceiver answers 500 while failing is set, 410 Gone while gone is set,
// else 200; it remembers which webhook-ids it saw and which it accepted.
type dqReceiver struct {
	failing, gone atomic.Bool
	mu            sync.Mutex
	seen, got     map[string]int
}

func (r *dqReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	id := req.Header.Get("Webhook-Id")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[id]++
	switch {
	case r.failing.Load():
		w.WriteHeader(http.StatusInternalServerError)
	case r.gone.Load():
		w.WriteHeader(http.StatusGone)
	default:
		r.got[id]++
	}
}

func (r *dqReceiver) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

func (r *dqReceiver) saw(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id] > 0
}

// An endpoint that answered 410 is disabled and its jobs dead-lettered;
// once it is re-enabled (one PATCH), recover sends them all, with their
// event ids; resend sends one event again.
func TestRecoverAfterReenablingAndResend(t *testing.T) {
	t.Parallel()
	e := newDQEnv(t, true)
	rcv := &dqReceiver{seen: map[string]int{}, got: map[string]int{}}
	rcv.failing.Store(true)
	hook := httptest.NewServer(rcv)
	t.Cleanup(hook.Close)
	_, key := e.tenant()
	var ep struct {
		ID      string `json:"id"`
		Enabled bool   `json:"enabled"`
	}
	e.must(201, "POST", "/v1/endpoints", key, map[string]any{"name": "r", "url": hook.URL + "/hook", "events": []string{"post.*"}, "max_attempts": 20}, &ep)
	since := dlq.FormatTime(time.Now().Add(-time.Second))
	ids := []string{"p1", "p2", "p3"}
	for _, id := range ids {
		e.must(202, "POST", "/v1/events", key, map[string]any{"id": id, "type": "post.published", "data": map[string]any{"id": id}}, nil)
	}

	// Every job is queued and retrying; then the receiver answers 410 Gone:
	// the endpoint is disabled and all its jobs are dead-lettered.
	testenv.Eventually(t, 10*time.Second, func() bool { return rcv.saw("p1") && rcv.saw("p2") && rcv.saw("p3") },
		"the events were not attempted")
	rcv.gone.Store(true)
	rcv.failing.Store(false)
	var page struct {
		Data []dlq.Entry `json:"data"`
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		status, _, _ := e.call("GET", "/v1/dlq?endpoint_id="+ep.ID, key, nil, &page)
		return status == 200 && len(page.Data) == 3
	}, "3 dead letters expected")
	// Each dead letter shows every attempt of its job, not only the last:
	// 500s, then the 410.
	testenv.Eventually(t, 10*time.Second, func() bool {
		status, _, _ := e.call("GET", "/v1/dlq?endpoint_id="+ep.ID, key, nil, &page)
		if status != 200 || len(page.Data) != 3 {
			return false
		}
		gone := 0
		for _, d := range page.Data {
			// The job that met the 410 shows its 500s and the 410; the
			// others, dead-lettered because the endpoint was then
			// disabled, carry no attempt of their own and show their 500s.
			n := len(d.Attempts)
			if n == 0 || d.Attempts[0].StatusCode != 500 {
				return false
			}
			if d.Attempts[n-1].StatusCode == 410 && n >= 2 {
				gone++
			}
		}
		return gone >= 1
	}, "dead letters do not show every attempt (500s, then 410): %+v", page.Data)
	e.must(200, "GET", "/v1/endpoints/"+ep.ID, key, nil, &ep)
	if ep.Enabled {
		t.Fatal("the endpoint answered 410 but is still enabled")
	}
	// Recovering a disabled endpoint would only dead-letter again: 409.
	e.problemFields(409, "POST", "/v1/endpoints/"+ep.ID+"/recover?since="+url.QueryEscape(since), key, nil)

	rcv.gone.Store(false)
	e.must(200, "PATCH", "/v1/endpoints/"+ep.ID, key, map[string]any{"enabled": true}, &ep)
	var rp dlq.Replay
	h := e.must(202, "POST", "/v1/endpoints/"+ep.ID+"/recover", key, map[string]any{"since": since}, &rp)
	if rp.Source != dlq.SourceRecover || rp.Filter == nil || rp.Filter.EndpointID != ep.ID {
		t.Fatalf("recover %+v", rp)
	}
	rp = e.waitReplay(h.Get("Location"), key)
	if rp.State != dlq.StateDone || rp.Replayed != 3 || rp.Failed != 0 {
		t.Fatalf("recover %+v", rp)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, id := range ids {
			if rcv.count(id) != 1 {
				return false
			}
		}
		return true
	}, "the recovered events did not all arrive once")
	e.must(200, "GET", "/v1/dlq?endpoint_id="+ep.ID, key, nil, &page)
	if len(page.Data) != 0 {
		t.Fatalf("dead letters left after recover: %+v", page.Data)
	}

	// Resend one event to all its endpoints (no body), then to one.
	var res dlq.Resent
	e.must(202, "POST", "/v1/events/p1/resend", key, nil, &res)
	if res.EventID != "p1" || len(res.Jobs) != 1 || res.Jobs[0].EndpointID != ep.ID {
		t.Fatalf("resend %+v", res)
	}
	e.must(202, "POST", "/v1/events/p2/resend", key, map[string]any{"endpoint_id": ep.ID}, &res)
	testenv.Eventually(t, 10*time.Second, func() bool { return rcv.count("p1") == 2 && rcv.count("p2") == 2 },
		"resent events did not arrive")
	if rcv.count("p3") != 1 {
		t.Fatalf("p3 delivered %d times", rcv.count("p3"))
	}
}

// TestDLQPortalSessionScope: a portal session lists, reads and replays the
// dead letters of its own endpoints and event types only; replays by
// filter must stay within its scope; a read-only session replays nothing.
func TestDLQPortalSessionScope(t *testing.T) {
	t.Parallel()
	signer := portalSigner(t, 9)
	e := newDQEnv(t, false, api.WithSessions(signer))
	a, _ := e.tenant()
	posts, err := e.st.CreateEndpoint(e.ctx, a, store.Endpoint{Name: "posts", URL: "http://127.0.0.1:9/", Events: []string{"post.*"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	all, err := e.st.CreateEndpoint(e.ctx, a, store.Endpoint{Name: "all", URL: "http://127.0.0.1:9/", Events: []string{"*"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	s1, _, s3 := e.dead(a, posts.ID, "e1"), e.dead(a, posts.ID, "e2"), e.dead(a, all.ID, "e3")
	sign := func(c session.Claims) string {
		c.Tenant = a
		tok, _, err := signer.Sign(c, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	listed := func(key, query string) []uint64 {
		var page struct {
			Data []dlq.Entry `json:"data"`
		}
		e.must(200, "GET", "/v1/dlq"+query, key, nil, &page)
		var ids []uint64
		for _, d := range page.Data {
			ids = append(ids, d.ID)
		}
		return ids
	}

	byEndpoint := sign(session.Claims{Endpoints: []string{posts.ID}})
	if got := listed(byEndpoint, ""); len(got) != 2 || slices.Contains(got, s3) {
		t.Fatalf("endpoint session lists %v, want the 2 of %s", got, posts.ID)
	}
	e.must(404, "GET", "/v1/dlq?endpoint_id="+all.ID, byEndpoint, nil, nil)
	e.must(404, "GET", fmt.Sprintf("/v1/dlq/%d", s3), byEndpoint, nil, nil)
	e.must(200, "GET", fmt.Sprintf("/v1/dlq/%d", s1), byEndpoint, nil, nil)
	e.must(404, "POST", "/v1/dlq/replay", byEndpoint, map[string]any{"id": s3}, nil)
	e.must(404, "POST", "/v1/dlq/replay", byEndpoint, map[string]any{"endpoint_id": all.ID}, nil)
	e.must(404, "POST", "/v1/endpoints/"+all.ID+"/recover", byEndpoint, map[string]any{"since": "2026-01-01T00:00:00Z"}, nil)
	if got := e.problemFields(422, "POST", "/v1/dlq/replay", byEndpoint, map[string]any{"all": true}); !slices.Equal(got, []string{"endpoint_id"}) {
		t.Fatalf("replay of all by an endpoint session: fields %v", got)
	}
	var rp dlq.Replay
	e.must(202, "POST", "/v1/dlq/replay", byEndpoint, map[string]any{"id": s1}, &rp)
	if got := e.waitReplay("/v1/dlq/replays/"+rp.ID, byEndpoint); got.Replayed != 1 {
		t.Fatalf("replay by id: %+v", got)
	}
	var replays struct {
		Data []dlq.Replay `json:"data"`
	}
	e.must(200, "GET", "/v1/dlq/replays", byEndpoint, nil, &replays)
	if len(replays.Data) != 0 {
		t.Fatalf("a session lists replays by id: %+v", replays.Data)
	}

	byType := sign(session.Claims{EventTypes: []string{"post.*"}})
	if got := listed(byType, ""); len(got) != 1 || slices.Contains(got, s3) {
		t.Fatalf("event type session lists %v, want the one left of %s (%s, subscribed to *, is hidden)", got, posts.ID, all.ID)
	}
	if got := e.problemFields(422, "POST", "/v1/dlq/replay", byType, map[string]any{"endpoint_id": posts.ID}); !slices.Equal(got, []string{"event_type"}) {
		t.Fatalf("replay without a type by a type session: fields %v", got)
	}
	e.must(202, "POST", "/v1/dlq/replay", byType, map[string]any{"endpoint_id": posts.ID, "event_type": "post.*"}, &rp)
	e.waitReplay("/v1/dlq/replays/"+rp.ID, byType)
	e.must(200, "GET", "/v1/dlq/replays", byType, nil, &replays)
	if len(replays.Data) != 1 || replays.Data[0].ID != rp.ID {
		t.Fatalf("type session lists replays %+v, want only %s", replays.Data, rp.ID)
	}

	readOnly := sign(session.Claims{ReadOnly: true})
	e.must(403, "POST", "/v1/dlq/replay", readOnly, map[string]any{"id": s3}, nil)
	e.must(403, "POST", "/v1/endpoints/"+all.ID+"/recover", readOnly, map[string]any{"since": "2026-01-01T00:00:00Z"}, nil)
	if got := listed(readOnly, ""); len(got) != 1 {
		t.Fatalf("read-only session lists %v, want the 1 left", got)
	}
}
