package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/redis/go-redis/v9"
)

const testAdmin = "adm_service_test_token_0123456789"

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// TestMain silences go-redis's own dial-failure lines: the outage test
// makes many on purpose, and Herald logs the outage itself.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	m.Run()
}

// hooks receives deliveries and remembers them by webhook-id.
type hooks struct {
	*httptest.Server
	mu    sync.Mutex
	first map[string]time.Time // webhook-id -> first received
	types map[string]string    // webhook-id -> event type
}

func newHooks(t *testing.T) *hooks {
	h := &hooks{first: map[string]time.Time{}, types: map[string]string{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env struct{ Type string }
		_ = json.Unmarshal(b, &env)
		h.mu.Lock()
		id := r.Header.Get("webhook-id")
		if _, ok := h.first[id]; !ok {
			h.first[id] = time.Now()
			h.types[id] = env.Type
		}
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hooks) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.first)
}

// start runs service.Run in process until the test ends and returns its
// HTTP address.
func start(t *testing.T, cfg service.Config) string {
	t.Helper()
	return "http://" + runInfo(t, cfg).HTTPAddr
}

// runInfo runs service.Run in process until the test ends and returns what it
// said when ready.
func runInfo(t *testing.T, cfg service.Config) service.Info {
	t.Helper()
	t.Setenv("NATS_URL", "")
	t.Setenv("REDIS_URL", "")
	cfg, err := service.FromEnv(cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := testenv.Serve(t, func(ctx context.Context, ready func(service.Info)) error {
		return service.Run(ctx, cfg, testenv.Logger(t), ready)
	})
	return info
}

func call(t *testing.T, method, url, auth string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

func mustCall(t *testing.T, want int, method, url, auth string, body any) map[string]any {
	t.Helper()
	status, v := call(t, method, url, auth, body)
	if status != want {
		t.Fatalf("%s %s: %d, want %d: %v", method, url, status, want, v)
	}
	return v
}

func metric(t *testing.T, base, name string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// Redis stops mid-traffic through a running all-in-one and comes back
// empty: routing goes on from the store of record (the cache metric says
// Redis is down), the cache refills when it returns, the attempt history
// is rebuilt from the streams, and every event is delivered.
func TestRedisStopAndRestartMidTraffic(t *testing.T) {
	rp := testenv.RedisProcess(t)
	rcv := newHooks(t)
	schedule, _ := retry.Parse("100ms,200ms,500ms")
	base := start(t, service.Config{
		Roles:    service.Roles{API: true, Router: true, Sender: true},
		Embedded: true, DataDir: t.TempDir(), NATSListen: "127.0.0.1:0",
		RedisURL: rp.URL(), RedisPrefix: "herald:", HTTPAddr: "127.0.0.1:0",
		AdminToken: testAdmin, Schedule: schedule, EgressAllowPrivate: true, LogLevel: "warn",
	})
	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "outage"})
	key, tenant := tn["api_key"].(string), tn["id"].(string)
	ep := mustCall(t, 201, "POST", base+"/v1/endpoints", key, map[string]any{"name": "r", "url": rcv.URL, "events": []string{"*"}, "max_attempts": 20})
	epID := ep["id"].(string)

	const n = 300
	for i := range n {
		switch i {
		case 100:
			rp.Kill()
		case 120:
			// A change while Redis is down: the cache cannot record it in
			// Redis, so routing reads the store.
			mustCall(t, 200, "PATCH", base+"/v1/endpoints/"+epID, key, map[string]any{"description": "changed during the outage"})
			testenv.Eventually(t, 10*time.Second, func() bool { return metric(t, base, "herald_cache_redis_up") == "0" },
				"herald_cache_redis_up did not drop to 0")
		case 200:
			rp.Start() // empty: no persistence
		case 220:
			mustCall(t, 200, "PATCH", base+"/v1/endpoints/"+epID, key, map[string]any{"description": "changed after"})
		}
		mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "post.published", "id": fmt.Sprintf("e-%d", i), "data": map[string]any{"i": i}})
	}
	testenv.Eventually(t, 45*time.Second, func() bool { return rcv.count() == n }, "not every event was delivered (%d of %d)", rcv.count(), n)
	for i := range n {
		if _, ok := rcv.first[fmt.Sprintf("e-%d", i)]; !ok {
			t.Fatalf("event e-%d never arrived", i)
		}
	}

	// The cache refills Redis, and the metric says so.
	opt, _ := redis.ParseURL(rp.URL())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	// (the first read after an outage is served from the store; the next
	// change's reload writes Redis again)
	testenv.Eventually(t, 10*time.Second, func() bool {
		mustCall(t, 200, "PATCH", base+"/v1/endpoints/"+epID, key, map[string]any{"description": time.Now().String()})
		mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "post.published", "data": 1})
		return rdb.Exists(context.Background(), "herald:cache:endpoints:"+tenant).Val() == 1 &&
			metric(t, base, "herald_cache_redis_up") == "1"
	}, "the Redis cache did not refill")

	// The history, lost with Redis, is rebuilt from the streams.
	testenv.Eventually(t, 20*time.Second, func() bool {
		status, v := call(t, "GET", base+"/v1/endpoints/"+epID+"/attempts?limit=100&status=succeeded", key, nil)
		if status != 200 || v["next_cursor"] == nil {
			return false
		}
		status, ev := call(t, "GET", base+"/v1/events/e-5", key, nil)
		return status == 200 && ev["deliveries"].([]any)[0].(map[string]any)["state"] == "delivered"
	}, "the attempt history was not rebuilt")
}

// An endpoint changed through one process is seen by a router in another
// within a second: the first event of the newly subscribed type that is
// sent after the change is delivered, in well under a second.
func TestEndpointChangeSeenByRouterWithinASecond(t *testing.T) {
	natsURL := testenv.NATS(t)
	redisURL, prefix := testenv.Redis(t)
	rcv := newHooks(t)
	common := service.Config{NATSURL: natsURL, RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		EgressAllowPrivate: true, LogLevel: "warn", EncryptionKey: testEncryptionKey}
	apiCfg := common
	apiCfg.Roles, apiCfg.AdminToken = service.Roles{API: true}, testAdmin
	workCfg := common
	workCfg.Roles = service.Roles{Router: true, Sender: true}
	base := start(t, apiCfg)
	start(t, workCfg)

	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "change"})
	key := tn["api_key"].(string)
	ep := mustCall(t, 201, "POST", base+"/v1/endpoints", key, map[string]any{"name": "r", "url": rcv.URL, "events": []string{"a.*"}})
	// The router has the tenant's endpoints cached once an event went through.
	mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "a.one", "id": "warm", "data": 1})
	testenv.Eventually(t, 10*time.Second, func() bool { return rcv.count() == 1 }, "first event not delivered")

	mustCall(t, 200, "PATCH", base+"/v1/endpoints/"+ep["id"].(string), key, map[string]any{"events": []string{"b.*"}})
	changed := time.Now()
	// Routers hear of the change through the KV watch, asynchronously: an
	// event routed in the first milliseconds may still see the old
	// subscription. Send a b.* event every 20 ms; the first one delivered
	// must have been sent within a second of the change.
	sent := map[string]time.Time{}
	for i := 0; rcv.count() < 2; i++ {
		if time.Since(changed) > 5*time.Second {
			t.Fatal("no event of the new subscription was delivered within 5 s: the router did not see the change")
		}
		id := fmt.Sprintf("after-%d", i)
		sent[id] = time.Now()
		mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "b.one", "id": id, "data": 1})
		time.Sleep(20 * time.Millisecond) // the sending rate, not a wait for a condition
	}
	rcv.mu.Lock()
	var firstID string
	for id := range rcv.first {
		if strings.HasPrefix(id, "after-") {
			firstID = id
		}
	}
	rcv.mu.Unlock()
	if lag := sent[firstID].Sub(changed); lag > time.Second {
		t.Fatalf("the first delivered event of the new subscription was sent %s after the change, want under 1 s", lag)
	}
	// and the old subscription is gone: a.* is no longer delivered
	mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "a.two", "id": "old-type", "data": 1})
	mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "b.two", "id": "marker", "data": 1})
	testenv.Eventually(t, 5*time.Second, func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		_, ok := rcv.first["marker"]
		return ok
	}, "marker not delivered")
	rcv.mu.Lock()
	_, stale := rcv.first["old-type"]
	rcv.mu.Unlock()
	if stale {
		t.Fatal("an event of the old subscription was delivered after the change")
	}
}
