package sender

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// A hot endpoint (far more jobs than its cap) is served at its cap: jobs
// refused by the cap wait in process and are handed each freed slot, never
// exceeding the cap shared through Redis, and each is delivered once.
func TestHotEndpointIsServedAtItsCap(t *testing.T) {
	js := newJS(t)
	const jobs, capacity = 1500, 4
	var (
		mu        sync.Mutex
		seen      = map[string]int{}
		now, peak atomic.Int32
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		defer now.Add(-1)
		for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
		}
		time.Sleep(time.Millisecond) // a receiver that takes a moment, so slots are held
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	url, prefix := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	lim := limit.New(rdb, prefix, limit.WithConcurrency(capacity))

	for i := range jobs {
		publishJob(t, js, "ep_hot", "hot-"+strconv.Itoa(i))
	}
	before := testutil.ToFloat64(handoffs)
	s := New(js, endpointsMap{"ep_hot": endpoint("ep_hot", srv.URL, 5)}, WithWorkers(64),
		WithLimiter(lim), WithEndpointConcurrency(capacity), WithLogger(testenv.Logger(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	testenv.Eventually(t, 90*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == jobs
	}, "the hot endpoint's jobs were not all delivered")
	if p := peak.Load(); p > capacity {
		t.Fatalf("%d requests in flight at once, cap %d", p, capacity)
	}
	mu.Lock()
	for id, n := range seen {
		if n > 1 {
			t.Errorf("job %s delivered %d times", id, n)
		}
	}
	mu.Unlock()
	if h := testutil.ToFloat64(handoffs) - before; h == 0 {
		t.Fatal("no refused job was handed a freed slot: every refusal went back to JetStream")
	}
	refused := testutil.ToFloat64(delayed.WithLabelValues("concurrency"))
	t.Logf("%d jobs, cap %d: peak %d in flight, %.0f handed a freed slot, %.0f concurrency refusals (all tests)",
		jobs, capacity, peak.Load(), testutil.ToFloat64(handoffs)-before, refused)
}
