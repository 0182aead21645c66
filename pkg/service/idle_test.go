package service_test

import (
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/service"
)

// An idle all-in-one holds its goroutines flat: nothing it does on a timer
// (the endpoint change watch's watchdog, the stream keeper, the limiter, the
// history projection, the replay watcher, the payload store) may leave a
// goroutine behind per tick. The change watch once did, one a second,
// forever, in every process.
func TestIdleAllInOneHoldsGoroutinesFlat(t *testing.T) {
	redisURL, prefix := testenv.Redis(t)
	rcv := newHooks(t)
	base := start(t, service.Config{
		Roles:    service.Roles{API: true, Router: true, Sender: true},
		Embedded: true, DataDir: t.TempDir(), NATSListen: "127.0.0.1:0",
		RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		AdminToken: testAdmin, EgressAllowPrivate: true, LogLevel: "warn",
	})
	// Warm-up: every role has done its work once (an event routed and
	// delivered, a test send, a listing of dead letters).
	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "idle"})
	key := tn["api_key"].(string)
	ep := mustCall(t, 201, "POST", base+"/v1/endpoints", key, map[string]any{"name": "r", "url": rcv.URL, "events": []string{"*"}})
	mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "a.b", "id": "warm", "data": 1})
	testenv.Eventually(t, 10*time.Second, func() bool { return rcv.count() == 1 }, "warm-up event not delivered")
	mustCall(t, 200, "POST", base+"/v1/endpoints/"+ep["id"].(string)+"/test", key, nil)
	mustCall(t, 200, "GET", base+"/v1/dlq", key, nil)
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(5 * time.Second) // let periodic work start and settle

	before := runtime.NumGoroutine()
	time.Sleep(20 * time.Second) // idle: the behaviour under test
	after := runtime.NumGoroutine()
	t.Logf("goroutines: %d after warm-up, %d after 20 s idle", before, after)
	// A tiny tolerance for a timer's goroutine caught mid-run; a leak per
	// tick grows by 20 or more.
	if after > before+3 {
		var b strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Fatalf("goroutines grew from %d to %d in 20 s of idleness:\n%s", before, after, b.String())
	}
}
