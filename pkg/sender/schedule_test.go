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
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// endpointsMap is a fixed set of endpoints: the sender's data source.
type endpointsMap map[string]store.Endpoint

func (m endpointsMap) Endpoint(_ context.Context, _, id string) (store.Endpoint, error) {
	e, ok := m[id]
	if !ok {
		return store.Endpoint{}, store.ErrNotFound
	}
	return e, nil
}

func newJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	js := testenv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	return js
}

func endpoint(id, url string, maxAttempts int) store.Endpoint {
	e := store.Endpoint{ID: id, TenantID: "tn_1", Name: id, URL: url, Events: []string{"*"}, Enabled: true,
		Signature: "none", MaxAttempts: maxAttempts, TimeoutMS: 1000}
	e.ApplyDefaults()
	return e
}

func publishJob(t *testing.T, js jetstream.JetStream, endpointID, eventID string) {
	t.Helper()
	job := &heraldv1.DeliveryJob{
		Id: event.JobID("tn_1", eventID, endpointID), TenantId: "tn_1", EndpointId: endpointID,
		Event:           &heraldv1.Event{Id: eventID, TenantId: "tn_1", Type: "post.published", Data: []byte(`{}`), AcceptedAtUnixMs: time.Now().UnixMilli()},
		CreatedAtUnixMs: time.Now().UnixMilli(),
	}
	b, err := proto.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), bus.DeliverySubject("tn_1", endpointID), b); err != nil {
		t.Fatal(err)
	}
}

// closedURL is an address where every connection is refused for the whole
// test: every attempt fails fast.
func closedURL(t *testing.T) string {
	return "http://127.0.0.1:" + strconv.Itoa(testenv.ClosedPort(t)) + "/dead"
}

type arrivals struct {
	mu   sync.Mutex
	seen map[string][]string // event id -> Herald-Attempt headers
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func receiver(t *testing.T, status int) (*httptest.Server, *arrivals) {
	a := &arrivals{seen: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		id := r.Header.Get("webhook-id")
		a.seen[id] = append(a.seen[id], r.Header.Get(HeaderAttempt))
		a.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, a
}

// More jobs than MaxAckPending wait on a dead endpoint while a healthy
// endpoint's events keep arriving on time: every retry leaves the consumer
// as a message schedule. The control shows the same load stalls when the
// waits stay inside the consumer (a rate limit's waits, which are naks), so
// the test can tell the two apart.
func TestLongWaitsDoNotBlockHealthyEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name          string
		rateLimited   bool
		wantDelivered bool
	}{
		{"retries wait as schedules", false, true},
		{"control: waits inside the consumer stall", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := newJS(t)
			healthy, got := receiver(t, http.StatusOK)
			dead := endpoint("ep_dead", closedURL(t), 5)
			if tc.rateLimited {
				dead.RateLimit = 1
			}
			eps := endpointsMap{"ep_dead": dead, "ep_healthy": endpoint("ep_healthy", healthy.URL, 5)}
			const maxAckPending, deadJobs = 10, 40
			s := New(js, eps, WithWorkers(8), WithMaxAckPending(maxAckPending), WithSchedule(retry.Schedule{time.Hour}),
				WithLimiter(limit.New(nil, "")), WithLogger(testenv.Logger(t)))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = s.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })

			for i := range deadJobs {
				publishJob(t, js, "ep_dead", "dead-"+strconv.Itoa(i))
			}
			// Wait until the dead jobs have been tried and are waiting.
			testenv.Eventually(t, 10*time.Second, func() bool {
				c, err := js.Consumer(ctx, bus.StreamDeliveries, bus.ConsumerSender)
				if err != nil {
					return false
				}
				info, err := c.Info(ctx)
				return err == nil && info.Delivered.Consumer >= maxAckPending
			}, "dead jobs were not attempted")

			start := time.Now()
			for i := range 20 {
				publishJob(t, js, "ep_healthy", "ok-"+strconv.Itoa(i))
			}
			deadline := time.Now().Add(5 * time.Second)
			for got.count() < 20 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond) // polling a deadline; the wait is the behaviour measured
			}
			if tc.wantDelivered {
				if got.count() != 20 {
					t.Fatalf("healthy endpoint got %d of 20 events within 5 s while %d jobs wait on a dead one", got.count(), deadJobs)
				}
				t.Logf("20 healthy events delivered in %v with %d jobs waiting (MaxAckPending %d)", time.Since(start), deadJobs, maxAckPending)
				retries, _ := js.Stream(ctx, bus.StreamRetries)
				info, _ := retries.Info(ctx)
				if info.State.Msgs < deadJobs {
					t.Fatalf("RETRIES holds %d schedules, want %d", info.State.Msgs, deadJobs)
				}
			} else if got.count() == 20 {
				t.Fatalf("control delivered everything: the test cannot tell waits in the consumer from schedules")
			}
		})
	}
}

// A job that waits as a schedule comes back with its attempts counted:
// attempts 1, 2, 3, then the dead letter.
func TestScheduledRetriesKeepAttemptNumbers(t *testing.T) {
	js := newJS(t)
	failing, got := receiver(t, http.StatusInternalServerError)
	eps := endpointsMap{"ep_fail": endpoint("ep_fail", failing.URL, 3)}
	s := New(js, eps, WithSchedule(retry.Schedule{time.Second}), WithScheduleThreshold(0), WithLogger(testenv.Logger(t)))
	s.rnd = func() float64 { return 0.5 } // no jitter
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	publishJob(t, js, "ep_fail", "evt-1")
	testenv.Eventually(t, 15*time.Second, func() bool {
		st, err := js.Stream(ctx, bus.StreamDLQ)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 1
	}, "the job never reached the DLQ")
	got.mu.Lock()
	defer got.mu.Unlock()
	if a := got.seen["evt-1"]; len(a) != 3 || a[0] != "1" || a[1] != "2" || a[2] != "3" {
		t.Fatalf("Herald-Attempt headers = %v, want [1 2 3]", a)
	}
}
