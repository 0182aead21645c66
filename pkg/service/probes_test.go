package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/service"
)

// probe is one answer of a probe: its status and, for /readyz, its checks.
type probe struct {
	status int
	checks map[string]string
}

func getProbe(base, path string) probe {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(base + path)
	if err != nil {
		return probe{}
	}
	defer resp.Body.Close()
	var v struct{ Checks map[string]string }
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return probe{status: resp.StatusCode, checks: v.Checks}
}

// eventsStored counts the tenant's events in EVENTS.
func eventsStored(t *testing.T, js jetstream.JetStream, tenant string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	subject := "herald.events." + tenant + ".>"
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// Ingest is ready while it can store events, whatever Redis does: a real
// redis-server stopped under a running ingest leaves /readyz at 200 with
// redis "degraded", every event sent meanwhile is stored in EVENTS, and
// the check is "ok" again once Redis is back. (Before, /readyz answered
// 503 and Kubernetes dropped every ingest pod during a Redis blip.)
func TestIngestReadyWhileRedisIsDown(t *testing.T) {
	rp := testenv.RedisProcess(t)
	natsURL := testenv.NATS(t)
	base := start(t, service.Config{
		Roles: service.Roles{API: true}, NATSURL: natsURL, RedisURL: rp.URL(), RedisPrefix: "herald:",
		HTTPAddr: "127.0.0.1:0", AdminToken: testAdmin, EncryptionKey: testEncryptionKey, LogLevel: "warn",
		TenantEventsPerSecond: 1000,
	})
	js := testenv.ConnectJetStream(t, natsURL)
	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "redis blip"})
	key, tenant := tn["api_key"].(string), tn["id"].(string)
	if p := getProbe(base, "/readyz"); p.status != 200 || p.checks["redis"] != "ok" {
		t.Fatalf("before the stop: /readyz %d %v, want 200 with redis ok", p.status, p.checks)
	}

	rp.Stop() // SIGTERM: redis-server is gone
	testenv.Eventually(t, 10*time.Second, func() bool {
		p := getProbe(base, "/readyz")
		if p.status != 200 {
			t.Fatalf("with Redis down: /readyz %d %v, want 200", p.status, p.checks)
		}
		return strings.HasPrefix(p.checks["redis"], "degraded: ")
	}, "/readyz did not report Redis as degraded")
	for _, path := range []string{"/livez", "/healthz", "/startupz"} {
		if p := getProbe(base, path); p.status != 200 {
			t.Errorf("with Redis down: %s answered %d, want 200", path, p.status)
		}
	}
	const n = 20
	for i := range n {
		mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "post.published", "id": fmt.Sprintf("blip-%d", i), "data": i})
		if p := getProbe(base, "/readyz"); p.status != 200 {
			t.Fatalf("with Redis down, after %d events: /readyz %d %v", i+1, p.status, p.checks)
		}
	}
	if got := eventsStored(t, js, tenant); got != n {
		t.Fatalf("%d events stored in EVENTS while Redis was down, want %d", got, n)
	}

	rp.Start()
	testenv.Eventually(t, 15*time.Second, func() bool {
		p := getProbe(base, "/readyz")
		return p.status == 200 && p.checks["redis"] == "ok"
	}, "/readyz did not see Redis back")
}

// A sender is ready while it can fetch jobs: its /readyz says so in the
// "sender" check, turns 503 while NATS is down (it can fetch nothing) and
// 200 again once the server is back, without a restart; it stays live
// throughout.
func TestSenderReadyWhileItCanFetch(t *testing.T) {
	ns := testenv.NATSServer(t)
	redisURL, prefix := testenv.Redis(t)
	base := start(t, service.Config{
		Roles: service.Roles{Sender: true}, NATSURL: ns.URL(), RedisURL: redisURL, RedisPrefix: prefix,
		HTTPAddr: "127.0.0.1:0", EncryptionKey: testEncryptionKey, LogLevel: "error",
	})
	if p := getProbe(base, "/readyz"); p.status != 200 || p.checks["sender"] != "ok" {
		t.Fatalf("/readyz %d %v, want 200 with sender ok", p.status, p.checks)
	}
	ns.Stop()
	testenv.Eventually(t, 10*time.Second, func() bool {
		p := getProbe(base, "/readyz")
		return p.status == 503 && p.checks["sender"] != "ok"
	}, "/readyz stayed ready with NATS down")
	if p := getProbe(base, "/livez"); p.status != 200 {
		t.Fatalf("with NATS down: /livez %d, want 200 (the process works; restarting it helps nothing)", p.status)
	}
	ns.Start(t)
	testenv.Eventually(t, 20*time.Second, func() bool {
		p := getProbe(base, "/readyz")
		return p.status == 200 && p.checks["sender"] == "ok"
	}, "/readyz not ready again after NATS came back")
}

// A slow start (NATS not there yet) is what the startup probe covers: the
// process is live at once, answers /startupz and /readyz 503 and the API
// 503 with Retry-After while it waits, and all three 200 once NATS is up.
func TestStartupProbeCoversASlowStart(t *testing.T) {
	ns := testenv.NATSServer(t)
	ns.Stop() // not there yet; the URL stays the same
	redisURL, prefix := testenv.Redis(t)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	t.Setenv("NATS_URL", "")
	t.Setenv("REDIS_URL", "")
	cfg, err := service.FromEnv(service.Config{
		Roles: service.Roles{API: true}, NATSURL: ns.URL(), RedisURL: redisURL, RedisPrefix: prefix,
		HTTPAddr: addr, AdminToken: testAdmin, EncryptionKey: testEncryptionKey, LogLevel: "error",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, cfg, testenv.Logger(t), nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("service did not stop")
		}
	})
	base := "http://" + addr
	testenv.Eventually(t, 10*time.Second, func() bool { return getProbe(base, "/livez").status == 200 },
		"not live while waiting for NATS")
	for _, path := range []string{"/startupz", "/readyz"} {
		if p := getProbe(base, path); p.status != 503 {
			t.Errorf("waiting for NATS: %s answered %d, want 503", path, p.status)
		}
	}
	resp, err := http.Get(base + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("the API while starting: %d, Retry-After %q, %s; want a 503 problem document with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
	}

	ns.Start(t)
	testenv.Eventually(t, 30*time.Second, func() bool {
		return getProbe(base, "/startupz").status == 200 && getProbe(base, "/readyz").status == 200
	}, "not started and ready after NATS came up")
	mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "late"})
}
