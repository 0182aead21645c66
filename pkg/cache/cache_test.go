package cache_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/store"
)

// Tests here read process-wide metrics; none of them runs in parallel.

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// quick bounds one call made inside Eventually.
func quick(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	js := testenv.JetStream(t)
	st, err := store.Open(testCtx(t), js)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	// Fail fast while Redis is away, so lookups fall back at once.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// run starts c's change watch until the test ends and waits until it is
// ready.
func run(t *testing.T, c *cache.Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, 10*time.Second, c.Ready, "cache watch not ready")
}

type fixture struct {
	st     *store.Store
	tenant string
	ep     store.Endpoint
}

func newFixture(t *testing.T, st *store.Store) fixture {
	t.Helper()
	ctx := testCtx(t)
	tn, _, err := st.CreateTenant(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := st.CreateEndpoint(ctx, tn.ID, store.Endpoint{Name: "v0", URL: "https://example.com/h", Events: []string{"*"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{st: st, tenant: tn.ID, ep: ep}
}

func (f fixture) rename(t *testing.T, name string) {
	t.Helper()
	if _, err := f.st.UpdateEndpoint(testCtx(t), f.tenant, f.ep.ID, func(e *store.Endpoint) error { e.Name = name; return nil }); err != nil {
		t.Fatal(err)
	}
}

// nameVia looks the fixture's endpoint up through c and returns its name, or
// "" on an error.
func (f fixture) nameVia(t *testing.T, c *cache.Cache) string {
	e, err := c.Endpoint(quick(t), f.tenant, f.ep.ID)
	if err != nil {
		t.Logf("lookup: %v", err)
		return ""
	}
	return e.Name
}

func layer(t *testing.T, l string) float64 {
	return testenv.Metric(t, "herald_cache_lookups_total", "layer", l)
}

func redisUp(t *testing.T) float64 { return testenv.Metric(t, "herald_cache_redis_up") }

func TestEndpointsServed(t *testing.T) {
	st := openStore(t)
	url, prefix := testenv.Redis(t)
	ctx := testCtx(t)
	f := newFixture(t, st)
	second, err := st.CreateEndpoint(ctx, f.tenant, store.Endpoint{Name: "second", URL: "https://example.com/2", Events: []string{"a.*"}})
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := st.CreateTenant(ctx, "B")

	c := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, url), prefix), cache.WithLogger(testenv.Logger(t)))
	run(t, c)

	eps, err := c.Endpoints(ctx, f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 || eps[0].ID != f.ep.ID || eps[1].ID != second.ID || eps[0].Secret != f.ep.Secret {
		t.Fatalf("Endpoints = %+v", eps)
	}
	e, err := c.Endpoint(ctx, f.tenant, second.ID)
	if err != nil || e.Name != "second" || e.Events[0] != "a.*" {
		t.Fatalf("Endpoint = %+v, %v", e, err)
	}
	if _, err := c.Endpoint(ctx, f.tenant, "ep_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Endpoint(missing) error = %v, want store.ErrNotFound", err)
	}
	if _, err := c.Endpoint(ctx, other.ID, f.ep.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Endpoint of another tenant error = %v, want store.ErrNotFound", err)
	}
	if eps, err := c.Endpoints(ctx, other.ID); err != nil || len(eps) != 0 {
		t.Fatalf("Endpoints(tenant without endpoints) = %v, %v", eps, err)
	}
	// Once loaded, a running cache answers from memory.
	local := layer(t, "local")
	if _, err := c.Endpoints(ctx, f.tenant); err != nil {
		t.Fatal(err)
	}
	if got := layer(t, "local"); got != local+1 {
		t.Fatalf("local lookups %v -> %v: second lookup not served from memory", local, got)
	}
	if redisUp(t) != 1 {
		t.Fatalf("herald_cache_redis_up = %v with Redis up", redisUp(t))
	}
}

func TestWithoutRedis(t *testing.T) {
	st := openStore(t)
	f := newFixture(t, st)
	c := cache.New(st, st.KV())
	// Not running: it cannot hear of changes, so it keeps nothing.
	if got := f.nameVia(t, c); got != "v0" {
		t.Fatalf("name = %q", got)
	}
	f.rename(t, "v1")
	if got := f.nameVia(t, c); got != "v1" {
		t.Fatalf("a cache without its watch served %q after the change", got)
	}
	run(t, c)
	if got := f.nameVia(t, c); got != "v1" {
		t.Fatalf("name = %q", got)
	}
	f.rename(t, "v2")
	testenv.Eventually(t, time.Second, func() bool { return f.nameVia(t, c) == "v2" }, "change not seen without Redis")
}

// A change written to the store reaches a running cache through its watch,
// with no Invalidate call.
func TestStoreChangeSeenByRunningCache(t *testing.T) {
	st := openStore(t)
	url, prefix := testenv.Redis(t)
	f := newFixture(t, st)
	c := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, url), prefix), cache.WithLogger(testenv.Logger(t)))
	run(t, c)

	for range 2 {
		if got := f.nameVia(t, c); got != "v0" {
			t.Fatalf("name = %q", got)
		}
	}
	local := layer(t, "local")
	if got := f.nameVia(t, c); got != "v0" || layer(t, "local") != local+1 {
		t.Fatal("the cache does not hold the endpoint in memory; the test would prove nothing")
	}

	f.rename(t, "v1")
	testenv.Eventually(t, time.Second, func() bool { return f.nameVia(t, c) == "v1" }, "rename not seen within 1s")

	// A new endpoint and a deletion are changes too.
	added, err := st.CreateEndpoint(testCtx(t), f.tenant, store.Endpoint{Name: "added", URL: "https://example.com/a", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, func() bool {
		_, err := c.Endpoint(quick(t), f.tenant, added.ID)
		return err == nil
	}, "new endpoint not seen within 1s")
	if err := st.DeleteEndpoint(testCtx(t), f.tenant, f.ep.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, func() bool {
		_, err := c.Endpoint(quick(t), f.tenant, f.ep.ID)
		return errors.Is(err, store.ErrNotFound)
	}, "deleted endpoint still served after 1s")
}

func TestTwoCachesOnOneRedisSeeChange(t *testing.T) {
	st := openStore(t)
	url, prefix := testenv.Redis(t)
	f := newFixture(t, st)
	c1 := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, url), prefix), cache.WithLogger(testenv.Logger(t)))
	c2 := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, url), prefix), cache.WithLogger(testenv.Logger(t)))
	run(t, c1)
	run(t, c2)

	if got := f.nameVia(t, c1); got != "v0" {
		t.Fatalf("c1 name = %q", got)
	}
	// c2 finds what c1 loaded in the shared layer.
	before := layer(t, "redis")
	if got := f.nameVia(t, c2); got != "v0" {
		t.Fatalf("c2 name = %q", got)
	}
	if got := layer(t, "redis"); got != before+1 {
		t.Fatalf("redis lookups %v -> %v: c2 did not use the entry c1 stored", before, got)
	}

	f.rename(t, "v1")
	testenv.Eventually(t, time.Second, func() bool { return f.nameVia(t, c1) == "v1" && f.nameVia(t, c2) == "v1" },
		"both caches should see the change within 1s")
	f.rename(t, "v2")
	testenv.Eventually(t, time.Second, func() bool { return f.nameVia(t, c2) == "v2" && f.nameVia(t, c1) == "v2" },
		"both caches should see the second change within 1s")
}

func TestRedisStoppedFallsBackToStore(t *testing.T) {
	st := openStore(t)
	p := testenv.RedisProcess(t)
	f := newFixture(t, st)
	// Not running, so it keeps nothing in memory and every lookup shows which
	// of Redis or the store answered.
	c := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, p.URL()), "t:"), cache.WithLogger(testenv.Logger(t)))

	for range 2 {
		if got := f.nameVia(t, c); got != "v0" {
			t.Fatalf("name = %q", got)
		}
	}
	if redisUp(t) != 1 {
		t.Fatalf("herald_cache_redis_up = %v with Redis up", redisUp(t))
	}
	r := layer(t, "redis")
	if got := f.nameVia(t, c); got != "v0" || layer(t, "redis") != r+1 {
		t.Fatal("lookups are not answered by Redis while it is up")
	}

	p.Stop()
	s := layer(t, "store")
	for range 3 {
		if got := f.nameVia(t, c); got != "v0" {
			t.Fatalf("lookup with Redis stopped = %q", got)
		}
	}
	if got := layer(t, "store"); got != s+3 {
		t.Fatalf("store lookups %v -> %v with Redis stopped, want +3", s, got)
	}
	if redisUp(t) != 0 {
		t.Fatalf("herald_cache_redis_up = %v with Redis stopped, want 0", redisUp(t))
	}
	f.rename(t, "v1")
	if got := f.nameVia(t, c); got != "v1" {
		t.Fatalf("change during the outage not served: %q", got)
	}

	p.Start()
	testenv.Eventually(t, 5*time.Second, func() bool { return f.nameVia(t, c) == "v1" && redisUp(t) == 1 },
		"herald_cache_redis_up did not return to 1 after Redis came back")
	r = layer(t, "redis")
	testenv.Eventually(t, 5*time.Second, func() bool { return f.nameVia(t, c) == "v1" && layer(t, "redis") > r },
		"lookups do not go through Redis again after it came back")
}

// A reader that fetched from the store before a change must not leave what it
// read in either layer once the change was made and announced.
func TestStaleReadNotKeptAfterChange(t *testing.T) {
	st := openStore(t)
	url, prefix := testenv.Redis(t)
	f := newFixture(t, st)
	src := &hookedSource{Source: st}
	c1 := cache.New(src, st.KV(), cache.WithRedis(redisClient(t, url), prefix), cache.WithLogger(testenv.Logger(t)))
	c2 := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, url), prefix), cache.WithLogger(testenv.Logger(t)))
	run(t, c1)
	run(t, c2)

	// While c1 reads the store, the endpoint changes and the writer
	// announces it to c1 (as the API does with its cache).
	src.hook = func() {
		f.rename(t, "v1")
		c1.Invalidate(testCtx(t), f.tenant)
	}
	if got := f.nameVia(t, c1); got != "v0" {
		t.Fatalf("in-flight read = %q, want the value it read, v0", got)
	}
	if !src.fired.Load() {
		t.Fatal("hook did not run: the read did not reach the store")
	}
	// From now on, nobody may see v0: not c1 from memory, not c2 from Redis.
	for range 3 {
		if got := f.nameVia(t, c1); got != "v1" {
			t.Fatalf("c1 served %q after the change", got)
		}
		if got := f.nameVia(t, c2); got != "v1" {
			t.Fatalf("c2 served %q after the change", got)
		}
	}
}

// hookedSource reads the real store, then runs hook once before returning,
// so a change can be slipped in between a read and its caching.
type hookedSource struct {
	cache.Source
	hook  func()
	fired atomic.Bool
}

func (h *hookedSource) ListEndpoints(ctx context.Context, tenant string) ([]store.Endpoint, error) {
	eps, err := h.Source.ListEndpoints(ctx, tenant)
	if h.hook != nil && h.fired.CompareAndSwap(false, true) {
		h.hook()
	}
	return eps, err
}

// When Redis is unreachable for a while but keeps its data, changes made
// meanwhile could not bump their generations: entries written before the gap
// must not be served after it.
func TestRedisGapDoesNotServeEntriesFromBefore(t *testing.T) {
	st := openStore(t)
	url, prefix := testenv.Redis(t)
	f := newFixture(t, st)
	proxy := newProxy(t, url)
	c := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, proxy.url), prefix), cache.WithLogger(testenv.Logger(t)))
	run(t, c)

	if got := f.nameVia(t, c); got != "v0" {
		t.Fatalf("name = %q", got)
	}
	if redisUp(t) != 1 {
		t.Fatal("Redis not in use")
	}

	proxy.cut()
	f.rename(t, "v1")
	// The watch hears of the change and fails to tell Redis.
	testenv.Eventually(t, 5*time.Second, func() bool { return redisUp(t) == 0 }, "cache did not notice Redis was unreachable")
	proxy.restore()

	// The invalidation finishes just after the gauge drops; from then on
	// only v1 may be served.
	testenv.Eventually(t, time.Second, func() bool { return f.nameVia(t, c) == "v1" },
		"after the gap the cache kept serving the entry written before the change")
	for range 3 {
		if got := f.nameVia(t, c); got != "v1" {
			t.Fatalf("after the gap the cache served %q, written before the change", got)
		}
	}
	if redisUp(t) != 1 {
		t.Fatalf("herald_cache_redis_up = %v after Redis is back", redisUp(t))
	}
}

// proxy forwards TCP to Redis and can cut every connection, simulating a
// network partition during which Redis keeps its data.
type proxy struct {
	url    string
	target string
	ln     net.Listener
	down   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func newProxy(t *testing.T, redisURL string) *proxy {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	if opt.Password != "" || opt.TLSConfig != nil {
		testenv.Unavailable(t, "the proxy test needs a plain Redis without auth or TLS")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{target: opt.Addr, ln: ln, conns: map[net.Conn]struct{}{}}
	p.url = "redis://" + ln.Addr().String() + "/" + itoa(opt.DB)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.cut(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if p.down.Load() {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.track(in, out)
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func (p *proxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

func (p *proxy) cut() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) restore() { p.down.Store(false) }

// Invalidate must make the shared layer forget before the local one: a
// lookup that misses locally in between would otherwise find the old Redis
// entry still current and keep it in memory for good. Pausing Redis writes
// holds an invalidation exactly in between.
func TestInvalidationDoesNotLetOldRedisEntryBackIn(t *testing.T) {
	st := openStore(t)
	p := testenv.RedisProcess(t)
	f := newFixture(t, st)
	opt, err := redis.ParseURL(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt) // default timeouts outlast the pause
	t.Cleanup(func() { rdb.Close() })
	c := cache.New(st, st.KV(), cache.WithRedis(rdb, "t:"), cache.WithLogger(testenv.Logger(t)))
	run(t, c)
	if got := f.nameVia(t, c); got != "v0" {
		t.Fatalf("name = %q", got)
	}

	const pause = 700 * time.Millisecond
	if err := rdb.Do(testCtx(t), "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err(); err != nil {
		testenv.Unavailable(t, "Redis without CLIENT PAUSE WRITE (6.2+): %v", err)
	}
	end := time.Now().Add(pause)
	f.rename(t, "v1")
	// Reads keep flowing while the watch's invalidation waits on Redis.
	testenv.Eventually(t, 5*time.Second, func() bool {
		f.nameVia(t, c)
		return time.Now().After(end)
	})
	testenv.Eventually(t, 2*time.Second, func() bool { return f.nameVia(t, c) == "v1" },
		"the old value stayed cached after the invalidation completed")
}
