package limit

import (
	"context"
	"testing"
	"time"
)

// A request admitted outside the breaker (a test send) passes an open
// breaker, never takes the half-open probe, leaves the breaker as it was
// whatever its outcome, and still counts against the rate limit and the
// concurrency cap that deliveries share.
func TestOutsideBreaker(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			a, b, _, _ := replicas(t, mode, WithConcurrency(1), WithClock(clk.Now), WithBreaker(1, time.Second, time.Second), WithBreakerFailingFor(0))
			ctx := context.Background()
			ttl := 10 * time.Second
			outside := func(l *Limiter, rate int) (Permit, Verdict) {
				return l.AdmitOutsideBreaker(ctx, "ep", rate, ttl)
			}

			mustAdmit(t, a, "ep", 0, ttl).Done(ctx, false) // opens the breaker for 1 s
			mustRefuse(t, b, "ep", 0, ttl, Breaker, time.Second)
			p, d := outside(b, 0)
			if !d.Allowed || d.Probe {
				t.Fatalf("outside the breaker, with it open: %+v, want OK and no probe", d)
			}
			// It holds the one slot: deliveries and other tests wait for it.
			if _, d := outside(a, 0); d.Allowed || d.Cause != Concurrency {
				t.Fatalf("second request outside the breaker with the cap full: %+v, want refused (concurrency)", d)
			}
			p.Done(ctx, true) // a success outside the breaker does not close it
			if s := a.State(ctx, "ep"); s != StateOpen {
				t.Fatalf("state %s after a success outside the breaker, want open", s)
			}

			clk.Add(time.Second) // half-open: the probe is for deliveries
			p, d = outside(a, 0)
			if !d.Allowed || d.Probe {
				t.Fatalf("outside the breaker, half-open: %+v, want OK and no probe", d)
			}
			p.Done(ctx, false) // nor does a failure re-open it
			probe, d := b.Admit(ctx, "ep", 0, ttl)
			if !d.Allowed || !d.Probe {
				t.Fatalf("delivery after a request outside the breaker: %+v, want the probe", d)
			}
			probe.Done(ctx, true)
			if s := a.State(ctx, "ep"); s != StateClosed {
				t.Fatalf("state %s after the probe succeeded", s)
			}

			// The rate limit applies: 1/s with a burst of 1.
			if _, d := outside(a, 1); !d.Allowed {
				t.Fatalf("first request at 1/s: %+v", d)
			} else if _, d := outside(b, 1); d.Allowed || d.Cause != Rate {
				t.Fatalf("second request at 1/s: %+v, want refused (rate)", d)
			}
		})
	}
}
