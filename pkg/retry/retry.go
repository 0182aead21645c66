// Package retry decides how long to wait between delivery attempts: the
// retry schedule, its jitter, and how far a receiver's Retry-After header
// may move it. It is pure computation; callers supply the clock and the
// random source so that every decision can be reproduced in tests.
package retry

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Schedule lists the waits after consecutive failed attempts: entry i is
// the wait after failed attempt i+1. Its length is not the attempt limit;
// attempts beyond it reuse the last entry, so the limit (attempt count or
// deadline) is the caller's policy.
type Schedule []time.Duration

// Default is the schedule used when none is configured. It spreads eight
// attempts over roughly 28 hours, long enough to ride out an overnight
// outage of a receiver without hammering it while it is down.
var Default = Schedule{
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	10 * time.Hour,
}

// Jitter is the relative spread applied by Delay when a random source is
// given: the wait is drawn uniformly from [d*(1-Jitter), d*(1+Jitter)).
// Without it, every delivery that failed during the same outage would be
// retried in the same instant and knock the receiver over again.
const Jitter = 0.2

// ErrInvalidSchedule is returned (wrapped) by Parse for malformed input.
var ErrInvalidSchedule = errors.New("retry: invalid schedule")

// Parse parses a comma-separated list of Go durations such as
// "100ms, 1s, 5s". Spaces around entries are ignored. Every entry must be
// positive, because a zero wait would turn a failing receiver into a busy
// loop. The empty string is an error rather than an empty schedule, so a
// blank configuration value cannot silently disable retrying.
func Parse(s string) (Schedule, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidSchedule)
	}
	sched := make(Schedule, 0, strings.Count(s, ",")+1)
	for i, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("%w: entry %d is empty", ErrInvalidSchedule, i+1)
		}
		d, err := time.ParseDuration(field)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrInvalidSchedule, i+1, err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("%w: entry %d (%s) is not positive", ErrInvalidSchedule, i+1, field)
		}
		sched = append(sched, d)
	}
	return sched, nil
}

// String formats s in the form accepted by Parse.
func (s Schedule) String() string {
	var b strings.Builder
	for i, d := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// Delay returns the wait after failed attempt n (1-based): s[n-1], or the
// last entry when n is beyond the schedule; n < 1 is treated as 1. If rnd
// is non-nil it must return values in [0, 1), and the wait is spread
// uniformly by ±Jitter around the scheduled value; a nil rnd gives the
// exact schedule. An empty schedule yields 0.
func (s Schedule) Delay(attempt int, rnd func() float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := min(max(attempt, 1), len(s)) - 1
	d := s[i]
	if rnd == nil {
		return d
	}
	f := 1 + Jitter*(2*rnd()-1)
	j := float64(d) * f
	if j >= math.MaxInt64 { // float64(MaxInt64) rounds up, so >= catches overflow
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(j)
}

// maxDelta caps delta-seconds values so that absurd headers such as
// "Retry-After: 99999999999999999999" still parse (they are well formed)
// without overflowing time.Duration. Bound reduces them further.
const maxDelta = time.Duration(math.MaxInt64)

// HTTP-date layouts from RFC 9110 §5.6.7: the preferred IMF-fixdate and
// the two obsolete forms recipients must still accept.
var dateLayouts = [...]string{
	"Mon, 02 Jan 2006 15:04:05 GMT",  // IMF-fixdate
	"Monday, 02-Jan-06 15:04:05 GMT", // RFC 850
	"Mon Jan _2 15:04:05 2006",       // asctime
}

// ParseRetryAfter parses a Retry-After header value (RFC 9110 §10.2.3),
// either delay-seconds ("120") or an HTTP-date, into a wait relative to
// now. It reports ok=false for an empty or malformed value and for a date
// before now, so that callers fall back to their own schedule instead of
// retrying immediately.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		var secs int64
		for i := 0; i < len(v); i++ {
			digit := int64(v[i] - '0')
			if secs > (int64(maxDelta/time.Second)-digit)/10 {
				return maxDelta, true
			}
			secs = secs*10 + digit
		}
		return time.Duration(secs) * time.Second, true
	}
	for _, layout := range dateLayouts {
		t, err := time.Parse(layout, v)
		if err != nil {
			continue
		}
		d := t.Sub(now)
		if d < 0 {
			return 0, false
		}
		return d, true
	}
	return 0, false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// Honour decides how long to wait when a receiver answered 429 or 503 with
// a Retry-After header: at least what it asked and at least the scheduled
// wait, so a receiver may slow Herald down but never make it retry early.
// A request above limit cannot be honoured (ok is false): the caller gives
// up rather than retry sooner than asked. A missing request (requested <=
// 0) yields the scheduled wait.
func Honour(requested, scheduled, limit time.Duration) (d time.Duration, ok bool) {
	if limit > 0 && requested > limit {
		return 0, false
	}
	return max(requested, scheduled, 0), true
}
