package limit

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestHandover: a permit handed over releases its slot, records its
// outcome in the breaker and grants the next request in one step; with
// Redis, no other replica can take the slot in between, and the leases
// held are exactly the requests in flight.
func TestHandover(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			a, b, rdb, prefix := replicas(t, mode, WithConcurrency(1), WithClock(clk.Now), WithBreaker(2, time.Second, time.Minute), WithBreakerFailingFor(0))
			ctx := context.Background()
			ttl := 10 * time.Second
			leases := func(want int64) {
				t.Helper()
				if rdb == nil {
					return
				}
				if n := rdb.ZCard(ctx, prefix+"limit:{ep}:leases").Val(); n != want {
					t.Fatalf("%d leases in Redis, want %d", n, want)
				}
			}

			p := mustAdmit(t, a, "ep", 0, ttl)
			mustRefuse(t, b, "ep", 0, ttl, Concurrency, time.Second)
			leases(1)
			for i := range 3 { // the slot passes along; the cap of 1 holds throughout
				next, v := p.Handover(ctx, true, 0, ttl)
				if !v.Allowed || next == nil {
					t.Fatalf("handover %d = %+v, want the slot", i, v)
				}
				mustRefuse(t, b, "ep", 0, ttl, Concurrency, time.Second)
				leases(1)
				p = next
			}
			// A permit is ended once: Done after Handover does nothing.
			first := mustAdmit(t, b, "other", 0, ttl)
			second, _ := first.Handover(ctx, true, 0, ttl)
			first.Done(ctx, false)
			mustRefuse(t, a, "other", 0, ttl, Concurrency, time.Second)
			second.Done(ctx, true)
			mustAdmit(t, a, "other", 0, ttl).Done(ctx, true)

			// Each handover's outcome counts: the second failure opens the
			// breaker, which refuses the request the slot was for, and the
			// slot is free.
			p, v := p.Handover(ctx, false, 0, ttl)
			if !v.Allowed {
				t.Fatalf("handover after one failure = %+v, want the slot", v)
			}
			next, v := p.Handover(ctx, false, 0, ttl)
			if v.Allowed || next != nil || v.Cause != Breaker || v.RetryIn != time.Second {
				t.Fatalf("handover after the second failure = %+v, want the breaker's refusal for 1s", v)
			}
			leases(0)
			if s := b.State(ctx, "ep"); s != StateOpen {
				t.Fatalf("breaker %s after two failed handovers, want open", s)
			}

			// The rate limit is asked for the next request as for any.
			q := mustAdmit(t, b, "rated2", 1, ttl)
			if next, v := q.Handover(ctx, true, 1, ttl); v.Allowed || next != nil || v.Cause != Rate {
				t.Fatalf("handover within the rate's spacing = %+v, want refused by rate", v)
			}
		})
	}
}

// TestHandoverDuringOutage: with Redis gone, a permit granted through it
// still hands over, from this process's own limits.
func TestHandoverDuringOutage(t *testing.T) {
	rp, rdb := redisProcess(t)
	clk := newClock()
	l := New(rdb, "handover:", WithConcurrency(1), WithClock(clk.Now))
	ctx := context.Background()
	p := mustAdmit(t, l, "ep", 0, 10*time.Second)
	rp.Stop()
	clk.Add(keepFor + time.Millisecond) // past the time its slot is kept without asking Redis
	next, v := p.Handover(ctx, true, 0, 10*time.Second)
	if !v.Allowed || next == nil {
		t.Fatalf("handover with Redis down = %+v, want a local slot", v)
	}
	if l.shared() {
		t.Fatal("limiter did not notice Redis is down")
	}
	mustRefuse(t, l, "ep", 0, 10*time.Second, Concurrency, time.Second)
	next.Done(ctx, true)
	mustAdmit(t, l, "ep", 0, 10*time.Second).Done(ctx, true)
}

// TestHandoverShare: a replica passes its slots along only up to its share
// of the cap while another replica wants slots, so a replica with a backlog
// does not starve the others. A slot kept without asking Redis (see
// TestHandoverKeepsASlot) is kept for a second at most: the share holds
// from then on.
func TestHandoverShare(t *testing.T) {
	clk := newClock()
	a, b, _, _ := replicas(t, "redis", WithConcurrency(4), WithClock(clk.Now))
	ctx := context.Background()
	ttl := 10 * time.Second
	var held []Permit
	for range 4 {
		held = append(held, mustAdmit(t, a, "ep", 0, ttl))
	}
	// Alone, a keeps passing its slots along.
	next, v := held[0].Handover(ctx, true, 0, ttl)
	if !v.Allowed {
		t.Fatalf("handover with no other replica wanting = %+v, want the slot", v)
	}
	held[0] = next
	// b is refused: it wants a slot. a's handovers, a second after their
	// slots were granted, now release slots until each holds its share, 2
	// of 4; each slot released goes to b.
	clk.Add(keepFor + time.Millisecond)
	mustRefuse(t, b, "ep", 0, ttl, Concurrency, time.Second)
	var bs []Permit
	for i := range 2 {
		if next, v := held[i].Handover(ctx, true, 0, ttl); v.Allowed || next != nil || v.Cause != Concurrency {
			t.Fatalf("handover %d over a's share = %+v, want refused by the cap", i, v)
		}
		bs = append(bs, mustAdmit(t, b, "ep", 0, ttl))
	}
	mustRefuse(t, b, "ep", 0, ttl, Concurrency, time.Second)
	// At its share, a passes a slot along again; so does b.
	if next, v := held[2].Handover(ctx, true, 0, ttl); !v.Allowed {
		t.Fatalf("handover within a's share = %+v, want the slot", v)
	} else {
		held[2] = next
	}
	if next, v := bs[0].Handover(ctx, true, 0, ttl); !v.Allowed {
		t.Fatalf("handover within b's share = %+v, want the slot", v)
	} else {
		bs[0] = next
	}
	// b stops wanting and lets its slots go: a second later a may hold them all.
	bs[0].Done(ctx, true)
	bs[1].Done(ctx, true)
	clk.Add(1001 * time.Millisecond)
	mustAdmit(t, a, "ep", 0, ttl)
	last := mustAdmit(t, a, "ep", 0, ttl)
	if _, v := last.Handover(ctx, true, 0, ttl); !v.Allowed {
		t.Fatalf("handover with all 4 slots and nobody else wanting = %+v, want the slot", v)
	}
}

// TestHandoverKeepsASlot: a request that succeeded passes its slot to the
// next request of the same replica without a Redis round trip, under the
// lease Redis granted, for a second after the grant, while the breaker
// holds nothing and no rate limit applies. Any other handover asks Redis:
// one past that second (a new lease), a failure (the breaker counts it),
// the success after a failure (which resets the count), and a request
// under a rate limit.
func TestHandoverKeepsASlot(t *testing.T) {
	clk := newClock()
	a, b, rdb, prefix := replicas(t, "redis", WithConcurrency(1), WithClock(clk.Now), WithBreaker(3, time.Second, time.Minute), WithBreakerFailingFor(0))
	ctx := context.Background()
	ttl := 10 * time.Second
	leases := func() []string { return rdb.ZRange(ctx, prefix+"limit:{ep}:leases", 0, -1).Val() }
	fails := func() string { return rdb.HGet(ctx, prefix+"limit:{ep}:breaker", "fails").Val() }
	handover := func(p Permit, success, keep bool) Permit {
		t.Helper()
		before, k := leases(), testutil.ToFloat64(kept)
		next, v := p.Handover(ctx, success, 0, ttl)
		if !v.Allowed || next == nil {
			t.Fatalf("handover = %+v, want the slot", v)
		}
		after := leases()
		if len(after) != 1 {
			t.Fatalf("leases %v after a handover, want exactly one", after)
		}
		if kept := testutil.ToFloat64(kept) > k; kept != keep || slices.Equal(before, after) != keep {
			t.Fatalf("handover kept the slot without Redis: %v (lease %v -> %v), want %v", kept, before, after, keep)
		}
		return next
	}

	p := mustAdmit(t, a, "ep", 0, ttl)
	p = handover(p, true, true)
	mustRefuse(t, b, "ep", 0, ttl, Concurrency, time.Second) // the kept slot counts
	p = handover(p, true, true)
	clk.Add(keepFor + time.Millisecond)
	p = handover(p, true, false) // a second after the grant: Redis, a new lease
	p = handover(p, false, false)
	if f := fails(); f != "1" {
		t.Fatalf("breaker fails %q after a failed handover, want 1", f)
	}
	p = handover(p, true, false) // the success resets the failure in Redis
	if f := fails(); f != "" {
		t.Fatalf("breaker fails %q after a success, want none", f)
	}
	p = handover(p, true, true) // clean again
	p.Done(ctx, true)
	if n := len(leases()); n != 0 {
		t.Fatalf("%d leases after Done of a kept slot, want 0", n)
	}

	q := mustAdmit(t, a, "rated", 100, ttl)
	k := testutil.ToFloat64(kept)
	if next, v := q.Handover(ctx, true, 100, ttl); !v.Allowed || next == nil {
		t.Fatalf("handover under a rate limit = %+v, want the slot", v)
	} else {
		next.Done(ctx, true)
	}
	if testutil.ToFloat64(kept) != k {
		t.Fatal("a handover under a rate limit kept its slot without asking Redis")
	}
}
