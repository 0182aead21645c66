package limit

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// clock is a clock the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	url, prefix := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb, prefix
}

// replicas returns two Limiters that stand for two sender replicas: on one
// Redis in mode "redis", or one local-only Limiter twice in mode "local".
func replicas(t *testing.T, mode string, opts ...Option) (a, b *Limiter, rdb *redis.Client, prefix string) {
	t.Helper()
	opts = append([]Option{WithLogger(testenv.Logger(t))}, opts...)
	if mode == "local" {
		l := New(nil, "", opts...)
		return l, l, nil, ""
	}
	rdb, prefix = newRedis(t)
	return New(rdb, prefix, opts...), New(rdb, prefix, opts...), rdb, prefix
}

var modes = []string{"redis", "local"}

func mustAdmit(t *testing.T, l *Limiter, ep string, rate int, ttl time.Duration) Permit {
	t.Helper()
	p, d := l.Admit(context.Background(), ep, rate, ttl)
	if !d.Allowed || p == nil {
		t.Fatalf("Admit(%s) = %+v, want OK", ep, d)
	}
	return p
}

func mustRefuse(t *testing.T, l *Limiter, ep string, rate int, ttl time.Duration, cause Cause, wait time.Duration) {
	t.Helper()
	p, d := l.Admit(context.Background(), ep, rate, ttl)
	if d.Allowed || p != nil {
		t.Fatalf("Admit(%s) = %+v, want refused (%s)", ep, d, cause)
	}
	if d.Cause != cause || d.RetryIn != wait {
		t.Fatalf("Admit(%s) = %+v, want cause %s, retry in %v", ep, d, cause, wait)
	}
}

func TestConcurrencyCapAcrossReplicas(t *testing.T) {
	const (
		limit   = 5
		workers = 32
		each    = 20
	)
	a, b, rdb, prefix := replicas(t, "redis", WithConcurrency(limit))
	ctx := context.Background()
	var inFlight, maxSeen, refused atomic.Int64
	freed := make(chan struct{}, workers)
	errs := make(chan string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			lim := []*Limiter{a, b}[w%2]
			for range each {
				for {
					p, d := lim.Admit(ctx, "ep_cap", 0, 10*time.Second)
					if d.Allowed {
						n := inFlight.Add(1)
						for m := maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
						}
						_ = rdb.Ping(ctx).Err() // the "request": one round trip while the slot is held
						inFlight.Add(-1)
						p.Done(ctx, true)
						select {
						case freed <- struct{}{}:
						default:
						}
						break
					}
					refused.Add(1)
					if d.Cause != Concurrency || d.RetryIn <= 0 || d.RetryIn > time.Second {
						errs <- "unexpected refusal: " + d.Cause.String() + " " + d.RetryIn.String()
						return
					}
					// A real sender NAKs for d.RetryIn; here wake on a release.
					select {
					case <-freed:
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	t.Logf("max in flight %d (cap %d), %d refusals for %d requests", maxSeen.Load(), limit, refused.Load(), workers*each)
	// A Redis call slower than the 500 ms budget (a loaded machine) is
	// decided locally, where each replica holds the cap alone: the bound is
	// then the documented degraded one.
	bound := int64(limit)
	if n := a.outages.Load() + b.outages.Load(); n > 0 {
		bound = 2 * limit
		t.Logf("Redis was too slow %d times: each replica enforced the cap alone meanwhile", n)
	}
	if maxSeen.Load() > bound {
		t.Fatalf("%d requests in flight, cap is %d (bound %d)", maxSeen.Load(), limit, bound)
	}
	if refused.Load() == 0 {
		t.Fatal("no refusal: the test did not contend")
	}
	if n := rdb.ZCard(ctx, prefix+"limit:{ep_cap}:leases").Val(); n != 0 {
		t.Fatalf("%d leases left after every Done", n)
	}
}

func TestExpiredLeasesFreeSlots(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			a, b, _, _ := replicas(t, mode, WithConcurrency(2), WithClock(clk.Now))
			ttl := 5 * time.Second
			stale1 := mustAdmit(t, a, "ep", 0, ttl)
			stale2 := mustAdmit(t, b, "ep", 0, ttl)
			// Capped; the hint is the bound, not the lease's 5 s.
			mustRefuse(t, a, "ep", 0, ttl, Concurrency, time.Second)
			clk.Add(4500 * time.Millisecond)
			mustRefuse(t, b, "ep", 0, ttl, Concurrency, 500*time.Millisecond)
			clk.Add(500 * time.Millisecond) // both holders "crashed": their leases expire
			p1 := mustAdmit(t, b, "ep", 0, ttl)
			p2 := mustAdmit(t, a, "ep", 0, ttl)
			mustRefuse(t, a, "ep", 0, ttl, Concurrency, time.Second)
			// A late Done of an expired lease frees nothing it does not own.
			stale1.Done(context.Background(), true)
			stale2.Done(context.Background(), true)
			mustRefuse(t, b, "ep", 0, ttl, Concurrency, time.Second)
			p1.Done(context.Background(), true)
			p1.Done(context.Background(), true) // twice: no effect
			p3 := mustAdmit(t, a, "ep", 0, ttl)
			mustRefuse(t, a, "ep", 0, ttl, Concurrency, time.Second)
			p2.Done(context.Background(), true)
			p3.Done(context.Background(), true)
		})
	}
}

func TestRateLimit(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			a, b, _, _ := replicas(t, mode, WithConcurrency(0), WithClock(clk.Now))
			ttl := 10 * time.Second

			// 10/s: burst 1, one request every 100 ms across replicas.
			mustAdmit(t, a, "ep10", 10, ttl).Done(context.Background(), true)
			mustRefuse(t, b, "ep10", 10, ttl, Rate, 100*time.Millisecond)
			clk.Add(99 * time.Millisecond)
			mustRefuse(t, a, "ep10", 10, ttl, Rate, time.Millisecond)
			clk.Add(time.Millisecond)
			mustAdmit(t, b, "ep10", 10, ttl).Done(context.Background(), true)

			// Over five simulated seconds, asking as often as possible from
			// both replicas, about 10 per second get through.
			got := countAdmitted(t, clk, []*Limiter{a, b}, "ep10b", 10, 5*time.Second, 5*time.Millisecond)
			if got < 50 || got > 51 {
				t.Fatalf("10/s for 5 s admitted %d", got)
			}

			// 100/s: a burst of 10, then one every 10 ms.
			for i := range 10 {
				mustAdmit(t, []*Limiter{a, b}[i%2], "ep100", 100, ttl)
			}
			mustRefuse(t, a, "ep100", 100, ttl, Rate, 10*time.Millisecond)
			got = countAdmitted(t, clk, []*Limiter{a, b}, "ep100b", 100, 2*time.Second, time.Millisecond)
			if got < 200 || got > 211 {
				t.Fatalf("100/s for 2 s admitted %d", got)
			}

			// 0 = no rate limit.
			for range 50 {
				mustAdmit(t, b, "ep0", 0, ttl)
			}
		})
	}
}

// countAdmitted moves the clock in steps over span, asking at every step
// until refused, and counts the grants.
func countAdmitted(t *testing.T, clk *clock, ls []*Limiter, ep string, rate int, span, step time.Duration) int {
	t.Helper()
	n := 0
	for el := time.Duration(0); el < span; el += step {
		for i := 0; ; i++ {
			p, d := ls[i%len(ls)].Admit(context.Background(), ep, rate, 10*time.Second)
			if !d.Allowed {
				if d.Cause != Rate || d.RetryIn <= 0 || d.RetryIn > time.Second/time.Duration(rate) {
					t.Fatalf("refusal %+v", d)
				}
				break
			}
			p.Done(context.Background(), true)
			n++
		}
		clk.Add(step)
	}
	return n
}

// TestOrder: breaker, then rate, then concurrency; a refusal by a later
// check spends nothing of an earlier one.
func TestOrder(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			a, b, _, _ := replicas(t, mode, WithConcurrency(1), WithClock(clk.Now), WithBreaker(1, 500*time.Millisecond, time.Second), WithBreakerFailingFor(0))
			ctx := context.Background()
			ttl := 10 * time.Second
			p := mustAdmit(t, a, "ep", 10, ttl)
			clk.Add(100 * time.Millisecond)
			// Rate would pass, concurrency refuses: no rate token is spent.
			mustRefuse(t, b, "ep", 10, ttl, Concurrency, time.Second)
			p.Done(ctx, true)
			p = mustAdmit(t, b, "ep", 10, ttl)
			// Both would refuse: rate is asked first.
			mustRefuse(t, a, "ep", 10, ttl, Rate, 100*time.Millisecond)
			p.Done(ctx, true)

			f := mustAdmit(t, a, "slow", 1, ttl) // 1/s: the next request may go in 1 s
			f.Done(ctx, false)                   // 1 failure opens the breaker for 500 ms
			mustRefuse(t, b, "slow", 1, ttl, Breaker, 500*time.Millisecond)
			clk.Add(500 * time.Millisecond)
			// Half-open, but the rate refuses: the probe stays available.
			mustRefuse(t, a, "slow", 1, ttl, Rate, 500*time.Millisecond)
			clk.Add(500 * time.Millisecond)
			probe, d := b.Admit(ctx, "slow", 1, ttl)
			if !d.Allowed || !d.Probe {
				t.Fatalf("Admit = %+v, want the probe", d)
			}
			// The probe in flight refuses the rest, before rate is asked.
			mustRefuse(t, a, "slow", 1, ttl, Breaker, 500*time.Millisecond)
			if s := a.State(ctx, "slow"); s != StateHalfOpen {
				t.Fatalf("state %s with a probe in flight", s)
			}
			probe.Done(ctx, true)
			if s := a.State(ctx, "slow"); s != StateClosed {
				t.Fatalf("state %s after a successful probe", s)
			}
		})
	}
}

// The breaker opens only when the run of failures has also lasted long
// enough: an endpoint that fails each event's first attempt but takes the
// retry seconds later (or fails half its requests at volume) is not cut
// off, while one that keeps failing is.
func TestBreakerNeedsFailingFor(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			a, b, _, _ := replicas(t, mode, WithClock(clk.Now), WithBreaker(3, 30*time.Second, 2*time.Minute), WithBreakerFailingFor(10*time.Second))
			ctx := context.Background()
			ttl := 10 * time.Second
			both := []*Limiter{a, b}

			// Many failures within 5 s, then a success: never opens.
			for i := range 20 {
				mustAdmit(t, both[i%2], "ep", 0, ttl).Done(ctx, false)
				clk.Add(250 * time.Millisecond)
			}
			if s := a.State(ctx, "ep"); s != StateClosed {
				t.Fatalf("state %s after 20 failures within 5 s", s)
			}
			mustAdmit(t, b, "ep", 0, ttl).Done(ctx, true)
			// The success ended the run: 8 s more of failures is not enough.
			for i := range 9 {
				mustAdmit(t, both[i%2], "ep", 0, ttl).Done(ctx, false)
				clk.Add(time.Second)
			}
			if s := a.State(ctx, "ep"); s != StateClosed {
				t.Fatalf("state %s after failing for 8 s since the last success", s)
			}
			// The run reaches 10 s: the next failure opens it.
			clk.Add(time.Second)
			mustAdmit(t, a, "ep", 0, ttl).Done(ctx, false)
			for _, l := range both {
				if s := l.State(ctx, "ep"); s != StateOpen {
					t.Fatalf("state %s after failing for 10 s", s)
				}
			}
		})
	}
}

func TestBreaker(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			a, b, rdb, prefix := replicas(t, mode, WithClock(clk.Now), WithBreaker(3, 30*time.Second, 2*time.Minute), WithBreakerFailingFor(0))
			ctx := context.Background()
			ttl := 10 * time.Second
			both := []*Limiter{a, b}

			// Consecutive failures: a success in between resets the count.
			for i, ok := range []bool{false, false, true, false, false} {
				mustAdmit(t, both[i%2], "ep", 0, ttl).Done(ctx, ok)
			}
			if s := b.State(ctx, "ep"); s != StateClosed {
				t.Fatalf("state %s after 2 consecutive failures", s)
			}
			mustAdmit(t, a, "ep", 0, ttl).Done(ctx, false)
			for _, l := range both {
				if s := l.State(ctx, "ep"); s != StateOpen {
					t.Fatalf("state %s after 3 consecutive failures", s)
				}
			}
			before := delayedCount(t, "breaker")
			mustRefuse(t, b, "ep", 0, ttl, Breaker, 30*time.Second)
			if delayedCount(t, "breaker") != before+1 {
				t.Fatal("herald_limit_delayed_total{reason=breaker} not counted")
			}
			if g := breakerGauge(t, StateOpen); g < 1 {
				t.Fatalf("herald_breaker_state{state=open} = %v", g)
			}
			if rdb != nil {
				if n := rdb.Exists(ctx, prefix+"limit:{ep}:leases").Val(); n != 0 {
					t.Fatal("an open breaker took a slot")
				}
			}
			clk.Add(30*time.Second - time.Millisecond)
			mustRefuse(t, a, "ep", 0, ttl, Breaker, time.Millisecond)
			clk.Add(time.Millisecond)

			// Cool-downs double on failed probes up to the maximum.
			for _, next := range []time.Duration{time.Minute, 2 * time.Minute, 2 * time.Minute} {
				probe := oneProbe(t, both, "ep", ttl)
				probe.Done(ctx, false)
				mustRefuse(t, a, "ep", 0, ttl, Breaker, next)
				clk.Add(next)
			}
			if s := a.State(ctx, "ep"); s != StateHalfOpen {
				t.Fatalf("state %s after the cool-down", s)
			}

			// A probe whose sender died is given up after its lease TTL.
			lost := oneProbe(t, both, "ep", ttl)
			clk.Add(ttl - time.Second)
			mustRefuse(t, a, "ep", 0, ttl, Breaker, time.Second)
			clk.Add(time.Second)
			probe := oneProbe(t, both, "ep", ttl)
			gauged := breakerGauge(t, StateOpen) + breakerGauge(t, StateHalfOpen)
			probe.Done(ctx, true)
			for _, l := range both {
				if s := l.State(ctx, "ep"); s != StateClosed {
					t.Fatalf("state %s after a successful probe", s)
				}
			}
			if g := breakerGauge(t, StateOpen) + breakerGauge(t, StateHalfOpen); g != gauged-1 {
				t.Fatalf("herald_breaker_state open+half_open = %v after closing, was %v", g, gauged)
			}
			for range 20 {
				mustAdmit(t, b, "ep", 0, ttl).Done(ctx, true)
			}
			lost.Done(ctx, true) // late: changes nothing

			// Closed again, the cool-down starts over at 30 s.
			for i := range 3 {
				mustAdmit(t, both[i%2], "ep", 0, ttl).Done(ctx, false)
			}
			mustRefuse(t, a, "ep", 0, ttl, Breaker, 30*time.Second)
		})
	}
}

// oneProbe has many goroutines ask both replicas at once and checks that
// exactly one gets the half-open breaker's probe.
func oneProbe(t *testing.T, ls []*Limiter, ep string, ttl time.Duration) Permit {
	t.Helper()
	var (
		mu     sync.Mutex
		probes []Permit
		bad    []Verdict
		wg     sync.WaitGroup
	)
	for i := range 16 {
		wg.Go(func() {
			p, d := ls[i%len(ls)].Admit(context.Background(), ep, 0, ttl)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case d.Allowed && d.Probe:
				probes = append(probes, p)
			case d.Allowed || d.Cause != Breaker || d.RetryIn <= 0 || d.RetryIn > ttl:
				bad = append(bad, d)
			}
		})
	}
	wg.Wait()
	if len(probes) != 1 || len(bad) != 0 {
		t.Fatalf("%d probes granted (want 1), unexpected decisions %+v", len(probes), bad)
	}
	return probes[0]
}

func delayedCount(t *testing.T, reason string) float64 {
	return testenv.Metric(t, "herald_limit_delayed_total", "reason", reason)
}

func breakerGauge(t *testing.T, state string) float64 {
	return testenv.Metric(t, "herald_breaker_state", "state", state)
}

// redisProcess starts a redis-server of this test's own, which the test
// may stop, and a client of it.
func redisProcess(t *testing.T) (*testenv.Process, *redis.Client) {
	t.Helper()
	rp := testenv.RedisProcess(t)
	opt, err := redis.ParseURL(rp.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rp, rdb
}

func TestRedisOutage(t *testing.T) {
	rp, rdb := redisProcess(t)
	logs := &testenv.Buffer{}
	lg := zerolog.New(zerolog.MultiLevelWriter(logs, zerolog.ConsoleWriter{Out: testWriter{t}, NoColor: true}))
	a := New(rdb, "outage:", WithConcurrency(2), WithLogger(lg))
	a.recheckEvery = 20 * time.Millisecond
	b := New(rdb, "outage:", WithConcurrency(2))
	ctx := context.Background()
	ttl := 10 * time.Second

	// Shared: the cap holds across both.
	p1 := mustAdmit(t, a, "ep", 0, ttl)
	p2 := mustAdmit(t, b, "ep", 0, ttl)
	mustRefuse(t, a, "ep", 0, ttl, Concurrency, time.Second)
	p1.Done(ctx, true)
	p2.Done(ctx, true)
	held := mustAdmit(t, a, "ep", 0, ttl) // granted through Redis, Done during the outage

	rp.Stop()
	start := time.Now()
	mustAdmit(t, a, "ep-first", 0, ttl).Done(ctx, true)
	t.Logf("first Admit after Redis stopped took %v; the next ones are local", time.Since(start))
	// Redis is gone: Admit still answers, from this process's own limits,
	// concurrently, and the outage is logged once.
	var wg sync.WaitGroup
	var granted atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range 25 {
				if p, d := a.Admit(ctx, "ep-busy", 0, ttl); d.Allowed {
					granted.Add(1)
					p.Done(ctx, true)
				}
			}
		})
	}
	wg.Wait()
	if granted.Load() == 0 {
		t.Fatal("nothing admitted while Redis is down")
	}
	if a.shared() {
		t.Fatal("limiter still thinks Redis is up")
	}
	l1 := mustAdmit(t, a, "ep", 0, ttl)
	l2 := mustAdmit(t, a, "ep", 0, ttl)
	mustRefuse(t, a, "ep", 0, ttl, Concurrency, time.Second) // local cap
	held.Done(ctx, false)
	if s := a.State(ctx, "ep"); s != StateClosed {
		t.Fatalf("local state %s", s)
	}
	l1.Done(ctx, true)
	if n := strings.Count(logs.String(), "redis unavailable"); n != 1 {
		t.Fatalf("outage logged %d times, want once", n)
	}

	rp.Start()
	// While down, a's calls PING Redis in the background (at most every
	// recheckEvery); shared() is what Admit asks.
	testenv.Eventually(t, 10*time.Second, a.shared, "limiter did not notice Redis is back")
	if n := strings.Count(logs.String(), "redis is back"); n != 1 {
		t.Fatalf("return logged %d times, want once", n)
	}
	// Shared again: what a holds is seen by b.
	s1 := mustAdmit(t, a, "ep", 0, ttl)
	s2 := mustAdmit(t, a, "ep", 0, ttl)
	mustRefuse(t, b, "ep", 0, ttl, Concurrency, time.Second)
	l2.Done(ctx, true) // a local permit from the outage releases locally
	mustRefuse(t, b, "ep", 0, ttl, Concurrency, time.Second)
	s1.Done(ctx, true)
	mustAdmit(t, b, "ep", 0, ttl).Done(ctx, true)
	s2.Done(ctx, true)
	if n := strings.Count(logs.String(), "redis unavailable"); n != 1 {
		t.Fatalf("outage logged %d times in all, want once", n)
	}
}

func TestLocalOnlyNeverLogs(t *testing.T) {
	logs := &testenv.Buffer{}
	l := New(nil, "", WithLogger(zerolog.New(logs)))
	for range 20 {
		mustAdmit(t, l, "ep", 0, time.Second).Done(context.Background(), true)
	}
	if out := logs.String(); out != "" {
		t.Fatalf("local-only limiter logged: %s", out)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Causes name the reason label of herald_limit_delayed_total and of the
// sender's herald_sender_delayed_total: dashboards and alerts match these
// exact values.
func TestCauseNames(t *testing.T) {
	for c, want := range map[Cause]string{Breaker: "breaker", Rate: "rate", Concurrency: "concurrency", 0: "none", 9: "cause(9)"} {
		if got := c.String(); got != want {
			t.Errorf("Cause(%d).String() = %q, want %q", c, got, want)
		}
	}
	l := New(nil, "", WithConcurrency(1))
	mustAdmit(t, l, "ep-names", 0, time.Minute)
	before := delayedCount(t, "concurrency")
	mustRefuse(t, l, "ep-names", 0, time.Minute, Concurrency, time.Second)
	if delayedCount(t, "concurrency") != before+1 {
		t.Fatal("a concurrency refusal is not counted under reason=concurrency")
	}
}
