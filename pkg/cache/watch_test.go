package cache_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/store"
)

// TestWatchFollowsChangesAfterNATSRestart: after the NATS server restarts,
// a change is seen within seconds. A kv.Watch took 17 s here, during which a
// new endpoint was unknown to routing (services/faults found it).
func TestWatchFollowsChangesAfterNATSRestart(t *testing.T) {
	p := testenv.NATSProcess(t)
	js := testenv.ConnectJetStream(t, p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tn, _, err := st.CreateTenant(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateEndpoint(ctx, tn.ID, store.Endpoint{Name: "first", URL: "https://example.com/1", Events: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	c := cache.New(st, st.KV(), cache.WithJetStream(js))
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	testenv.Eventually(t, 10*time.Second, c.Ready, "cache watch not ready")
	count := func() int {
		qctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		eps, err := c.Endpoints(qctx, tn.ID)
		if err != nil {
			return -1
		}
		return len(eps)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return count() == 1 }, "first endpoint not cached")

	p.Stop()
	p.Start()
	testenv.Eventually(t, 10*time.Second, func() bool {
		qctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := st.CreateEndpoint(qctx, tn.ID, store.Endpoint{Name: "second", URL: "https://example.com/2", Events: []string{"*"}})
		return err == nil
	}, "the store does not answer after the restart")
	created := time.Now()
	testenv.Eventually(t, 3*time.Second, func() bool { return count() == 2 }, "an endpoint created after a NATS restart is not seen within 3s")
	t.Logf("change seen %s after it was made", time.Since(created).Round(time.Millisecond))
}

// staleSource lists endpoints as they were when it was made, as a cache
// entry loaded before a change would, but reads single endpoints from the
// store.
type staleSource struct {
	*store.Store
	list []store.Endpoint
}

func (s staleSource) ListEndpoints(context.Context, string) ([]store.Endpoint, error) {
	return s.list, nil
}

// TestEndpointMissCheckedWithStore: an endpoint missing from a cached list
// is looked up in the store before it is called not found, since a sender
// drops the jobs of endpoints not found.
func TestEndpointMissCheckedWithStore(t *testing.T) {
	js := testenv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tn, _, err := st.CreateTenant(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := st.CreateEndpoint(ctx, tn.ID, store.Endpoint{Name: "new", URL: "https://example.com/n", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(staleSource{Store: st}, st.KV())
	got, err := c.Endpoint(ctx, tn.ID, ep.ID)
	if err != nil || got.ID != ep.ID {
		t.Fatalf("Endpoint of an endpoint missing from the cached list = %+v, %v; want it from the store", got, err)
	}
	if _, err := c.Endpoint(ctx, tn.ID, "ep_gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Endpoint of an endpoint in neither = %v, want ErrNotFound", err)
	}
}

// TestIdleWatchHoldsGoroutinesFlat: an idle change watch does not grow the
// process's goroutines. The watchdog asked the ordered consumer for Closed()
// on every 1 s tick, and each call starts a goroutine that lives until the
// watch stops: +1 a second, forever, in every process.
func TestIdleWatchHoldsGoroutinesFlat(t *testing.T) {
	runningCache(t)         // watching, idle
	time.Sleep(time.Second) // warm-up: the watchdog's first tick has run
	before := runtime.NumGoroutine()
	time.Sleep(6 * time.Second) // idle: six watchdog ticks, the behaviour under test
	if after := runtime.NumGoroutine(); after > before+1 {
		t.Fatalf("goroutines %d after 6 s of an idle watch, %d before: the watch leaks", after, before)
	}
}

// TestOnChangeHearsWatchedChanges: a change written straight to the store
// (another process's API) reaches the OnChange hooks through the watch,
// with its tenant: the releaser of held deliveries acts on a resume at
// once rather than at its next look.
func TestOnChangeHearsWatchedChanges(t *testing.T) {
	js := testenv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tn, _, err := st.CreateTenant(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(st, st.KV(), cache.WithJetStream(js))
	heard := make(chan string, 16)
	c.OnChange(func(tenant string) { heard <- tenant })
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	testenv.Eventually(t, 10*time.Second, c.Ready, "cache watch not ready")
	if _, err := st.CreateEndpoint(ctx, tn.ID, store.Endpoint{Name: "e", URL: "https://example.com/e", Events: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-heard:
		if got != tn.ID {
			t.Fatalf("OnChange told of tenant %q, want %q", got, tn.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnChange not told of a change made in the store")
	}
}

// TestCurrentSeesChangesStoredBefore: a change written straight to the store
// (another process's API) is in what the cache serves once Current returns,
// however soon after the write it is read. Without Current, the local layer
// answered with the tenant's endpoints from before the change until the
// watch caught up, and the router matched an event sent right after its
// endpoint was created against them: the event went nowhere.
func TestCurrentSeesChangesStoredBefore(t *testing.T) {
	ctx := testCtx(t)
	st, c, tn := watchingCache(t)
	for i := range 30 {
		// The tenant is in the local layer before each change...
		if _, err := c.Endpoints(ctx, tn); err != nil {
			t.Fatal(err)
		}
		ep, err := st.CreateEndpoint(ctx, tn, store.Endpoint{Name: "e", URL: "https://example.com/h", Events: []string{"*"}, Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		// ...and read at once after it.
		if err := c.Current(ctx); err != nil {
			t.Fatalf("change %d: Current: %v", i, err)
		}
		eps, err := c.Endpoints(ctx, tn)
		if err != nil {
			t.Fatal(err)
		}
		if len(eps) != i+1 || !slices.ContainsFunc(eps, func(e store.Endpoint) bool { return e.ID == ep.ID }) {
			t.Fatalf("change %d: after Current the cache serves %d endpoints without %s: a change stored before Current is missing", i, len(eps), ep.ID)
		}
	}
}

// TestCurrentSharedByConcurrentCallers: callers at once all return, each
// after a round that began after it asked.
func TestCurrentSharedByConcurrentCallers(t *testing.T) {
	ctx := testCtx(t)
	st, c, tn := watchingCache(t)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			if i%20 == 0 {
				if _, err := st.CreateEndpoint(ctx, tn, store.Endpoint{Name: "e", URL: "https://example.com/h", Events: []string{"*"}, Enabled: true}); err != nil {
					errs <- err
					return
				}
			}
			errs <- c.Current(ctx)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	eps, err := c.Endpoints(ctx, tn)
	if err != nil || len(eps) != 10 {
		t.Fatalf("after every Current returned: %d endpoints (%v), want 10", len(eps), err)
	}
}

// runningCache is a store and a cache over it with its watch running.
func runningCache(t *testing.T) (*store.Store, *cache.Cache) {
	t.Helper()
	js := testenv.JetStream(t)
	st, err := store.Open(testCtx(t), js)
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(st, st.KV(), cache.WithJetStream(js))
	run(t, c)
	return st, c
}

// watchingCache is runningCache with a tenant without endpoints.
func watchingCache(t *testing.T) (*store.Store, *cache.Cache, string) {
	t.Helper()
	st, c := runningCache(t)
	tn, _, err := st.CreateTenant(testCtx(t), "A")
	if err != nil {
		t.Fatal(err)
	}
	return st, c, tn.ID
}
