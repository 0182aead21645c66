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
	"github.com/heraldhq/herald/pkg/retry"
)

// One endpoint that never answers (every request runs into its timeout)
// among healthy ones: the per-endpoint cap keeps it to a few workers, so the
// healthy endpoints' events keep arriving while its requests hang.
func TestBlackholeEndpointDoesNotHoldUpHealthyOnes(t *testing.T) {
	js := newJS(t)
	release := make(chan struct{})
	var hanging, maxHanging atomic.Int32
	blackhole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hanging.Add(1)
		for {
			m := maxHanging.Load()
			if n <= m || maxHanging.CompareAndSwap(m, n) {
				break
			}
		}
		defer hanging.Add(-1)
		select { // never answers before the sender's timeout
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); blackhole.Close() })

	var mu sync.Mutex
	arrived := map[string]time.Duration{}
	start := time.Now()
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived[r.Header.Get("webhook-id")] = time.Since(start)
		mu.Unlock()
	}))
	t.Cleanup(healthy.Close)

	hole := endpoint("ep_hole", blackhole.URL, 2)
	hole.TimeoutMS = 3000
	eps := endpointsMap{"ep_hole": hole}
	for i := range 10 {
		id := "ep_ok" + strconv.Itoa(i)
		eps[id] = endpoint(id, healthy.URL, 5)
	}
	const capacity = 4
	lim := limit.New(nil, "", limit.WithConcurrency(capacity))
	s := New(js, eps, WithWorkers(32), WithSchedule(retry.Schedule{time.Hour}), WithScheduleThreshold(time.Second),
		WithLimiter(lim), WithEndpointConcurrency(capacity), WithLogger(testenv.Logger(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	for i := range 200 {
		publishJob(t, js, "ep_hole", "hole-"+strconv.Itoa(i))
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return hanging.Load() == capacity }, "the black hole never filled its cap")
	start = time.Now()
	for i := range 100 {
		publishJob(t, js, "ep_ok"+strconv.Itoa(i%10), "ok-"+strconv.Itoa(i))
	}
	// Before the black hole's first timeout frees a worker: nothing but
	// isolation can deliver them in time.
	testenv.Eventually(t, 2*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(arrived) == 100
	}, "healthy endpoints' events held up behind a black hole")
	if m := maxHanging.Load(); m > capacity {
		t.Fatalf("%d requests hung on the black hole at once, cap %d", m, capacity)
	}
	mu.Lock()
	var last time.Duration
	for _, d := range arrived {
		last = max(last, d)
	}
	mu.Unlock()
	t.Logf("100 healthy events delivered within %v while %d requests hung on the black hole", last, hanging.Load())
}
