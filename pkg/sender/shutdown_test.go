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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/retry"
)

// A sender stopped mid-load (what SIGTERM does to a scaled-down pod) stops
// fetching, lets every request in flight finish and acks it: Run returns
// with nothing pending on the consumer, no request was cut off, and the
// jobs it never took go to the next sender. Across both, every job is sent
// exactly once.
func TestStopFinishesInFlightAndSendsNothingTwice(t *testing.T) {
	const (
		jobs    = 120
		workers = 8
		delay   = 300 * time.Millisecond // each answer: requests are in flight when the stop comes
	)
	js := newJS(t)
	var (
		mu       sync.Mutex
		got      = map[string]int{}
		inFlight atomic.Int32
		cut      atomic.Int32
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done(): // the sender hung up before the answer
			cut.Add(1)
			return
		}
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
	}))
	t.Cleanup(rcv.Close)
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	eps := endpointsMap{}
	for i := range 10 {
		id := "ep_" + strconv.Itoa(i)
		eps[id] = endpoint(id, rcv.URL, 5)
	}
	for i := range jobs {
		publishJob(t, js, "ep_"+strconv.Itoa(i%10), "ev-"+strconv.Itoa(i))
	}
	newSender := func() *Sender {
		return New(js, eps, WithWorkers(workers), WithSchedule(retry.Schedule{time.Hour}), WithLogger(testenv.Logger(t)))
	}

	a := newSender()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, func() bool { return delivered() >= workers && inFlight.Load() == workers },
		"sender A never had all its workers busy after a first round")
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after the stop: %v", err)
		}
	case <-time.After(delay + 5*time.Second):
		t.Fatal("Run did not return after the stop")
	}
	if err := a.Fetching(); err == nil {
		t.Error("a stopped sender still says it fetches jobs")
	}
	if n := cut.Load(); n != 0 {
		t.Fatalf("the stop cut off %d requests in flight", n)
	}
	byA := delivered()
	info, err := js.Consumer(context.Background(), bus.StreamDeliveries, bus.ConsumerSender)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := info.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
		t.Fatalf("after the stop: %d jobs unacked, %d redelivered; want every job sender A took acked", ci.NumAckPending, ci.NumRedelivered)
	}
	if byA >= jobs {
		t.Fatalf("sender A sent all %d jobs before the stop: the test proves nothing", jobs)
	}

	runTillCleanup(t, newSender())
	testenv.Eventually(t, 20*time.Second, func() bool { return delivered() == jobs }, "sender B did not send the rest (%d of %d)", delivered(), jobs)
	waitEmpty(t, js)
	mu.Lock()
	defer mu.Unlock()
	for id, n := range got {
		if n != 1 {
			t.Errorf("%s sent %d times", id, n)
		}
	}
	t.Logf("sender A sent %d jobs and stopped with %d requests in flight finished; sender B sent the other %d", byA, workers, jobs-byA)
}

// waitEmpty waits until DELIVERIES holds no job (WorkQueue: acked jobs go).
func waitEmpty(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() bool {
		st, err := js.Stream(context.Background(), bus.StreamDeliveries)
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	}, "DELIVERIES not empty")
}

// A sender stopped while jobs wait in its line for a hot endpoint gives
// them back to JetStream at once, rather than keeping them to the end of
// their wait (20 s here) or asking for slots it will not use; the next
// sender sends them. Every job is sent exactly once.
func TestStopGivesBackItsLine(t *testing.T) {
	const (
		jobs     = 200
		capacity = 2
		delay    = 20 * time.Millisecond // fast: jobs refused by the cap wait in line
	)
	js := newJS(t)
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
	}))
	t.Cleanup(rcv.Close)
	sent := func() (distinct, total int) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range got {
			total += n
		}
		return len(got), total
	}
	eps := endpointsMap{"ep_hot": endpoint("ep_hot", rcv.URL, 5)}
	for i := range jobs {
		publishJob(t, js, "ep_hot", "ev-"+strconv.Itoa(i))
	}
	newSender := func() *Sender {
		return New(js, eps, WithWorkers(64), WithEndpointConcurrency(capacity), WithSchedule(retry.Schedule{time.Hour}),
			WithHandoff(Handoff{Wait: 20 * time.Second}), WithLogger(testenv.Logger(t)))
	}
	a := newSender()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, func() bool { return a.endpoints.waiting.Load() >= 20 },
		"no line formed at the hot endpoint (%d waiting)", testenv.Lazy(func() string { return strconv.FormatInt(a.endpoints.waiting.Load(), 10) }))
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after the stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of the stop: the line was kept to the end of its 20 s wait")
	}
	if n := a.endpoints.waiting.Load(); n != 0 {
		t.Fatalf("%d jobs still in the stopped sender's line", n)
	}
	byA, _ := sent()
	if byA >= jobs {
		t.Fatalf("sender A sent all %d jobs before the stop: the test proves nothing", jobs)
	}

	runTillCleanup(t, newSender())
	testenv.Eventually(t, 30*time.Second, func() bool { d, _ := sent(); return d == jobs }, "the jobs given back were not all sent (%s of %d)",
		testenv.Lazy(func() string { d, _ := sent(); return strconv.Itoa(d) }), jobs)
	waitEmpty(t, js)
	if d, total := sent(); total != d {
		t.Errorf("%d requests for %d jobs: some sent twice", total, d)
	}
	t.Logf("sender A sent %d jobs before the stop; sender B the other %d", byA, jobs-byA)
}

// runTillCleanup runs s until the test ends.
func runTillCleanup(t *testing.T, s *Sender) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
}
