package limit

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	delayed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_limit_delayed_total",
		Help: "Requests Admit refused (to be retried later), by reason: concurrency, rate or breaker.",
	}, []string{"reason"})
	transitions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_breaker_transitions_total",
		Help: "Breaker transitions made by this process (to open, half_open = probe granted, closed); summed over replicas it counts every transition once.",
	}, []string{"to"})
	kept = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_limit_kept_total",
		Help: "Slots a request that ended passed to the next request of this process without a Redis round trip (a lease granted within the last second, a clean breaker, no rate limit).",
	})
	redisUp = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_limit_redis_up",
		Help: "1 while endpoint limits are shared through Redis, 0 while each process enforces them alone.",
	})
	stateDesc = prometheus.NewDesc("herald_breaker_state",
		"Endpoints whose breaker this process last saw open or half_open (closed ones are not listed); take max over replicas.",
		[]string{"state"}, nil)
)

func init() { prometheus.MustRegister(seen) }

// seen remembers the endpoints whose breaker this process saw not closed,
// for herald_breaker_state, which it computes at scrape time (open turns to
// half_open with time, not with a write).
var seen = &tracker{m: map[string]seenEntry{}}

type tracker struct {
	n  atomic.Int64 // len(m), read without the lock on the hot path
	mu sync.Mutex
	m  map[string]seenEntry
}

type seenEntry struct {
	openUntil time.Time
	seen      time.Time
	now       func() time.Time
}

// forgetAfter drops an entry not seen for this long after its cool-down (an
// endpoint that gets no more jobs, e.g. deleted).
const forgetAfter = 10 * time.Minute

func track(l *Limiter, endpoint string, st breakerState) {
	if !st.open && seen.n.Load() == 0 {
		return
	}
	key := l.prefix + endpoint
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if st.open {
		seen.m[key] = seenEntry{openUntil: time.UnixMilli(st.openUntil), seen: l.now(), now: l.now}
	} else {
		delete(seen.m, key)
	}
	seen.n.Store(int64(len(seen.m)))
}

func (t *tracker) Describe(ch chan<- *prometheus.Desc) { ch <- stateDesc }

func (t *tracker) Collect(ch chan<- prometheus.Metric) {
	var open, half float64
	t.mu.Lock()
	for k, e := range t.m {
		now := e.now()
		switch {
		case now.Before(e.openUntil):
			open++
		case now.Sub(e.seen) > forgetAfter && now.Sub(e.openUntil) > forgetAfter:
			delete(t.m, k)
		default:
			half++
		}
	}
	t.n.Store(int64(len(t.m)))
	t.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, open, StateOpen)
	ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, half, StateHalfOpen)
}
