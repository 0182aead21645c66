package sender

import (
	"sync"
	"sync/atomic"
	"time"
)

// minLimitWait is the shortest wait after a concurrency refusal: shorter
// ones would only spin jobs through JetStream.
const minLimitWait = 5 * time.Millisecond

// latencies keeps, per endpoint, a moving average of request latency and
// the requests in flight in this process, to refuse over-cap jobs cheaply
// and size their wait.
type latencies struct {
	m        sync.Map // endpoint id -> *atomic.Int64 (ns)
	inFlight sync.Map // endpoint id -> *atomic.Int32
}

func (l *latencies) counter(endpoint string) *atomic.Int32 {
	v, _ := l.inFlight.LoadOrStore(endpoint, new(atomic.Int32))
	return v.(*atomic.Int32)
}

func (l *latencies) start(endpoint string) { l.counter(endpoint).Add(1) }
func (l *latencies) end(endpoint string)   { l.counter(endpoint).Add(-1) }

// busy reports whether this process has capacity requests in flight to
// endpoint already.
func (l *latencies) busy(endpoint string, capacity int) bool {
	return int(l.counter(endpoint).Load()) >= capacity
}

func (l *latencies) observe(endpoint string, d time.Duration) {
	v, _ := l.m.LoadOrStore(endpoint, new(atomic.Int64))
	a := v.(*atomic.Int64)
	for {
		old := a.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if a.CompareAndSwap(old, next) {
			return
		}
	}
}

// expected is the endpoint's average latency, or 0 when none was seen.
func (l *latencies) expected(endpoint string) time.Duration {
	if v, ok := l.m.Load(endpoint); ok {
		return time.Duration(v.(*atomic.Int64).Load())
	}
	return 0
}
