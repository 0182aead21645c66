package sender

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/store"
)

// The limiter reports facts; the sender decides. A full cap or a spent
// rate limit waits in the consumer for its place in the endpoint's queue
// (never sooner than the rate's hint), an open breaker leaves the consumer
// for the rest of its cool-down, and every refusal is counted under the
// cause's name.
func TestRefusedDecidesFromTheVerdict(t *testing.T) {
	s := New(nil, nil, WithEndpointConcurrency(2), WithScheduleThreshold(time.Minute))
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	s.endpoints.get("ep").avg.Store(int64(10 * time.Millisecond))
	ep := &store.Endpoint{ID: "ep"}

	d := s.refused(ep, limit.Verdict{Cause: limit.Concurrency, RetryIn: time.Second})
	// The first refused job is due at once (minLimitWait), not after the
	// limiter's worst case of a second; the next one slot time later (half
	// of 10 ms shared by 2 slots).
	if d != (delay{reason: "concurrency", wait: minLimitWait, paced: true}) {
		t.Fatalf("concurrency refusal: %+v, want paced at %v", d, minLimitWait)
	}
	d = s.refused(ep, limit.Verdict{Cause: limit.Concurrency, RetryIn: time.Second})
	if want := minLimitWait + 2500*time.Microsecond; d.wait != want {
		t.Fatalf("second concurrency refusal due after %v, want %v (one slot time after the first)", d.wait, want)
	}

	rated := &store.Endpoint{ID: "rated", RateLimit: 10}
	d = s.refused(rated, limit.Verdict{Cause: limit.Rate, RetryIn: 300 * time.Millisecond})
	if d != (delay{reason: "rate", wait: 300 * time.Millisecond, paced: true}) {
		t.Fatalf("rate refusal: %+v, want paced and no sooner than the limiter's 300ms", d)
	}

	d = s.refused(ep, limit.Verdict{Cause: limit.Breaker, RetryIn: 30 * time.Second})
	if d != (delay{reason: "breaker", wait: 30 * time.Second, away: true}) {
		t.Fatalf("breaker refusal: %+v, want the cool-down's 30s, out of the consumer", d)
	}
}
