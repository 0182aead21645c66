package sender

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// The attempt count travels with the job, so nothing in Redis can change
// it: with the cap refusing jobs all the time (cap 1, two senders), Redis
// full of another deployment's keys under the same prefix, and Redis
// flushed in the middle, every event reaches an always-failing endpoint
// exactly max_attempts times, numbered 1, 2, 3, and a healthy endpoint
// with max_attempts 1 exactly once: no wait ever uses an attempt.
func TestAttemptCountsIgnoreRedisState(t *testing.T) {
	for _, mode := range []string{"shared, stale, then flushed", "redis down"} {
		t.Run(mode, func(t *testing.T) {
			js := newJS(t)
			var rdb *redis.Client
			prefix := ""
			if mode == "redis down" {
				addr := strings.TrimSuffix(strings.TrimPrefix(closedURL(t), "http://"), "/dead")
				rdb = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
			} else {
				url, p := testenv.Redis(t)
				opt, err := redis.ParseURL(url)
				if err != nil {
					t.Fatal(err)
				}
				rdb, prefix = redis.NewClient(opt), p
				// Another deployment's leftovers under the same prefix: the
				// keys the old design kept per DELIVERIES sequence.
				for seq := 1; seq <= 200; seq++ {
					rdb.Set(context.Background(), prefix+"skips:"+strconv.Itoa(seq), 5, time.Hour)
				}
			}
			t.Cleanup(func() { rdb.Close() })

			failing, bad := receiver(t, http.StatusInternalServerError)
			healthy, good := slowReceiver(t, 20*time.Millisecond)
			eps := endpointsMap{
				"ep_fail": endpoint("ep_fail", failing.URL, 3),
				"ep_ok":   endpoint("ep_ok", healthy.URL, 1),
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			t.Cleanup(func() { cancel(); wg.Wait() })
			for range 2 {
				lim := limit.New(rdb, prefix, limit.WithConcurrency(1))
				s := New(js, eps, WithWorkers(16), WithSchedule(retry.Schedule{time.Second}),
					WithLimiter(lim), WithEndpointConcurrency(1), WithLogger(testenv.Logger(t)))
				wg.Add(1)
				go func() { defer wg.Done(); _ = s.Run(ctx) }()
			}
			const n = 20
			for i := range n {
				publishJob(t, js, "ep_fail", "evt-"+strconv.Itoa(i))
				publishJob(t, js, "ep_ok", "evt-"+strconv.Itoa(i))
			}
			if mode != "redis down" {
				testenv.Eventually(t, 10*time.Second, func() bool { return good.count() >= n/2 }, "healthy deliveries did not start")
				if err := rdb.FlushAll(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			var dead int
			testenv.Eventually(t, 30*time.Second, func() bool {
				dead = dlqCount(t, js)
				return dead == n && good.count() == n
			}, "want %d dead letters and %d healthy events", n, n)
			// Quiet: nothing more arrives after the books balance.
			time.Sleep(1500 * time.Millisecond) // a retry would be due within the schedule's 1 s
			bad.mu.Lock()
			defer bad.mu.Unlock()
			good.mu.Lock()
			defer good.mu.Unlock()
			for i := range n {
				id := "evt-" + strconv.Itoa(i)
				if got := bad.seen[id]; !slices.Equal(got, []string{"1", "2", "3"}) {
					t.Errorf("always-failing endpoint, %s: Herald-Attempt %v, want [1 2 3]", id, got)
				}
				if got := good.seen[id]; !slices.Equal(got, []string{"1"}) {
					t.Errorf("healthy endpoint with max_attempts 1, %s: Herald-Attempt %v, want [1]", id, got)
				}
			}
			if d := dlqCount(t, js); d != n || dead != n {
				t.Errorf("DLQ holds %d entries, want %d (one per event at the failing endpoint)", d, n)
			}
		})
	}
}

// slowReceiver answers 200 after d, so that a cap of 1 refuses jobs.
func slowReceiver(t *testing.T, d time.Duration) (*httptest.Server, *arrivals) {
	a := &arrivals{seen: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d) // a slow receiver is the condition under test
		a.mu.Lock()
		id := r.Header.Get("webhook-id")
		a.seen[id] = append(a.seen[id], r.Header.Get(HeaderAttempt))
		a.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return srv, a
}

// dlqCount is the number of dead letters stored.
func dlqCount(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}
