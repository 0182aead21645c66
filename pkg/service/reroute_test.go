package service_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/service"
)

// flaky answers 500 to the first request of each event and 204 after, and
// counts the 2xx answers it gave per event.
type flaky struct {
	*httptest.Server
	mu       sync.Mutex
	requests map[string]int
	ok       map[string]int
}

func newFlaky(t *testing.T, failFirst bool, latency time.Duration) *flaky {
	f := &flaky{requests: map[string]int{}, ok: map[string]int{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(latency) // a receiver's answer time: it keeps jobs waiting in DELIVERIES
		id := r.Header.Get("webhook-id")
		f.mu.Lock()
		f.requests[id]++
		fail := failFirst && f.requests[id] == 1
		if !fail {
			f.ok[id]++
		}
		f.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *flaky) delivered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ok)
}

// DELIVERIES deleted under load, with jobs queued behind the endpoint cap
// and retries waiting in RETRIES: the stream keeper recreates it, the
// router routes again the events whose jobs may have been in it, and the
// new stream takes back the retries that fired since its oldest job. Every
// event reaches both endpoints with a 2xx; duplicates are allowed (events
// delivered before the loss are routed again), loss is not.
func TestDeliveriesLostIsRerouted(t *testing.T) {
	redisURL, prefix := testenv.Redis(t)
	healthy := newFlaky(t, false, 40*time.Millisecond) // with the cap of 10: 250/s, slower than the events come
	firstFails := newFlaky(t, true, time.Millisecond)
	schedule, _ := retry.Parse("1s")
	info := runInfo(t, service.Config{
		Roles:    service.Roles{API: true, Router: true, Sender: true},
		Embedded: true, DataDir: t.TempDir(), NATSListen: "127.0.0.1:0",
		RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		AdminToken: testAdmin, Schedule: schedule, EgressAllowPrivate: true, LogLevel: "warn",
	})
	base := "http://" + info.HTTPAddr
	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "lost deliveries"})
	key := tn["api_key"].(string)
	mustCall(t, 201, "POST", base+"/v1/endpoints", key, map[string]any{"name": "healthy", "url": healthy.URL, "events": []string{"*"}})
	mustCall(t, 201, "POST", base+"/v1/endpoints", key, map[string]any{"name": "first fails", "url": firstFails.URL, "events": []string{"*"}})

	js := operatorJetStream(t, info)
	const n = 400
	for i := range n {
		if i == n/2 {
			// Jobs queue behind the cap, retries wait in RETRIES, and the
			// keeper has looked at DELIVERIES at least once.
			testenv.Eventually(t, 10*time.Second, func() bool { return healthy.delivered() >= 20 }, "deliveries did not start")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := js.DeleteStream(ctx, bus.StreamDeliveries); err != nil {
				t.Fatalf("delete DELIVERIES: %v", err)
			}
			cancel()
			t.Logf("DELIVERIES deleted after %d events; %d and %d delivered", i, healthy.delivered(), firstFails.delivered())
		}
		mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "post.published", "id": fmt.Sprintf("e-%d", i), "data": map[string]any{"i": i}})
	}
	testenv.Eventually(t, 60*time.Second, func() bool { return healthy.delivered() == n && firstFails.delivered() == n },
		"not every event reached both endpoints after DELIVERIES was lost")
	dups := 0
	for _, f := range []*flaky{healthy, firstFails} {
		f.mu.Lock()
		for _, c := range f.ok {
			dups += c - 1
		}
		f.mu.Unlock()
	}
	t.Logf("all %d events delivered to both endpoints; %d duplicate 2xx deliveries (events routed again)", n, dups)
	testenv.Eventually(t, 20*time.Second, func() bool {
		v := metric(t, base, `herald_router_events_total{result="rerouted"}`)
		return v != "" && v != "0"
	}, "herald_router_events_total{result=\"rerouted\"} stayed 0: nothing was routed again")
}

// operatorJetStream connects to the all-in-one's embedded NATS as an
// operator would: with Herald's own credentials from the data dir.
func operatorJetStream(t *testing.T, info service.Info) jetstream.JetStream {
	t.Helper()
	own, err := service.ReadEmbeddedNATSAuth(filepath.Dir(info.NATSAuthFile))
	if err != nil {
		t.Fatal(err)
	}
	js := testenv.ConnectJetStream(t, info.NATSURL, own.Options()...)
	return js
}
