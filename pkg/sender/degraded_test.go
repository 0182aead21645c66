package sender

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/retry"
)

// With Redis down each sender limits alone. A job held back by one
// sender's cap and redelivered to another must still get its attempt: here
// max_attempts is 1, so any wait counted as an attempt would dead-letter a
// job that was never sent.
func TestLimitWaitsUseNoAttemptsWithoutRedis(t *testing.T) {
	js := newJS(t)
	var mu sync.Mutex
	got := map[string]int{}
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // a slow receiver is the condition under test
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
	}))
	t.Cleanup(slow.Close)
	eps := endpointsMap{"ep_slow": endpoint("ep_slow", slow.URL, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for range 2 {
		lim := limit.New(nil, "", limit.WithConcurrency(2))
		s := New(js, eps, WithWorkers(16), WithSchedule(retry.Schedule{time.Second}), WithScheduleThreshold(time.Minute),
			WithLimiter(lim), WithLogger(testenv.Logger(t)))
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
	const n = 40
	for i := range n {
		publishJob(t, js, "ep_slow", "evt-"+strconv.Itoa(i))
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	}, "not every job was delivered")
	st, err := js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("%d jobs dead-lettered although every wait was a limit's, not an attempt", info.State.Msgs)
	}
}
