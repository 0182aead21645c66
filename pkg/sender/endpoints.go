package sender

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	// minLimitWait is the shortest wait after a concurrency refusal: shorter
	// ones would only spin jobs through JetStream.
	minLimitWait = time.Millisecond
	// maxHold bounds how long a refused job may wait in this process for a
	// slot of a fast endpoint before it goes back to JetStream. It is far
	// below AckWait, and only fast endpoints qualify (see holdFor), so a
	// slow endpoint's jobs never wait here.
	maxHold = 200 * time.Millisecond
	// fastEndpoint is the average slot time up to which an endpoint's
	// refused jobs may wait for a slot in process.
	fastEndpoint = 20 * time.Millisecond
	// maxWaitingPerEndpoint, maxWaiting and maxWaitingBytes bound the jobs
	// waiting in process: per endpoint, in all, and by the size of their
	// messages.
	maxWaitingPerEndpoint = 1024
	maxWaiting            = 4096
	maxWaitingBytes       = 64 << 20
)

// endpoints keeps this process's view of each endpoint it sends to: a
// moving average of how long a request holds a slot, the requests in
// flight, and the jobs waiting for a slot. It lets the sender refuse over-cap jobs without a
// Redis round trip, hand a freed slot straight to a waiting job, and space
// the return of the jobs it sends back to JetStream so that they come back
// about when a slot frees instead of all at once.
type endpoints struct {
	m            sync.Map // endpoint id -> *endpointState
	waiting      atomic.Int64
	waitingBytes atomic.Int64
}

type endpointState struct {
	avg      atomic.Int64 // ns, moving average of how long a slot is held
	inFlight atomic.Int32
	waiting  atomic.Int32
	// freed wakes one job waiting in this process when a request ends. A
	// token may outlive the job it was meant for and wake a later one for
	// nothing: a woken job asks for the slot again and may wait on.
	freed chan struct{}
	// queued is the unix ns up to which returns of refused jobs are
	// already spaced (a virtual queue, see backoff).
	queued atomic.Int64
	// used is the unix ns of the last request started, for sweep.
	used atomic.Int64
}

func (l *endpoints) get(endpoint string) *endpointState {
	if v, ok := l.m.Load(endpoint); ok {
		return v.(*endpointState)
	}
	v, _ := l.m.LoadOrStore(endpoint, &endpointState{freed: make(chan struct{}, 16)})
	return v.(*endpointState)
}

// start marks a slot taken; it returns when, for end.
func (l *endpoints) start(endpoint string) time.Time {
	e := l.get(endpoint)
	e.inFlight.Add(1)
	now := time.Now()
	e.used.Store(now.UnixNano())
	return now
}

// sweep forgets endpoints idle since before idleSince: nothing in flight or
// waiting, no refused job still due. A sender that works for many endpoints
// over its life would otherwise keep every one of them. An endpoint used
// again right as it is forgotten starts afresh; at worst its slot time is
// learnt anew and a job waiting on the old state waits out its hold, while
// the limiter keeps the cap.
func (l *endpoints) sweep(idleSince time.Time) (forgotten int) {
	cut := idleSince.UnixNano()
	l.m.Range(func(k, v any) bool {
		e := v.(*endpointState)
		if e.used.Load() < cut && e.inFlight.Load() == 0 && e.waiting.Load() == 0 && e.queued.Load() < cut {
			l.m.Delete(k)
			forgotten++
		}
		return true
	})
	return forgotten
}

// end marks a slot free again, learns how long it was held, and wakes one
// job waiting for a slot, if any.
func (l *endpoints) end(endpoint string, started time.Time) {
	e := l.get(endpoint)
	e.inFlight.Add(-1)
	e.observe(time.Since(started))
	if e.waiting.Load() > 0 {
		select {
		case e.freed <- struct{}{}:
		default:
		}
	}
}

// busy reports whether this process has capacity requests in flight to
// endpoint already.
func (l *endpoints) busy(endpoint string, capacity int) bool {
	return int(l.get(endpoint).inFlight.Load()) >= capacity
}

// observe adds a slot's holding time to the moving average: the request
// and the limiter's bookkeeping around it, which is what the next waiting
// job waits for.
func (e *endpointState) observe(d time.Duration) {
	a := &e.avg
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

// expected is how long the endpoint's slots are held on average, or 0 when none was seen.
func (l *endpoints) expected(endpoint string) time.Duration {
	return time.Duration(l.get(endpoint).avg.Load())
}

// queueing reports whether jobs of endpoint wait in this process for a
// slot: a newcomer then queues behind them instead of taking a slot that
// was freed for one of them.
func (l *endpoints) queueing(endpoint string) bool {
	return l.get(endpoint).waiting.Load() > 0
}

// holdFor is how long a job of size bytes refused by endpoint's
// concurrency cap may wait here for a slot, or 0 when it must go back to
// JetStream at once: the endpoint is not known to be fast; this process has
// no request to it in flight, so no slot will be freed here (the other
// replicas hold the cap); as many jobs wait already as the endpoint can
// take within maxHold (a hot endpoint's backlog thus waits here only as far
// as it will be served soon); or the process's bounds on waiting jobs are
// reached. The wait is about the time the jobs ahead of it take, plus two
// slot times, never more than maxHold.
func (l *endpoints) holdFor(endpoint string, capacity, size int) time.Duration {
	e := l.get(endpoint)
	avg := time.Duration(e.avg.Load())
	if avg <= 0 || avg > fastEndpoint || capacity <= 0 || e.inFlight.Load() <= 0 {
		return 0
	}
	waiting := int64(e.waiting.Load())
	limit := min(max(int64(capacity)*int64(maxHold/avg), int64(capacity)), maxWaitingPerEndpoint)
	if waiting >= limit || l.waiting.Load() >= maxWaiting || l.waitingBytes.Load()+int64(size) > maxWaitingBytes {
		return 0
	}
	return min(maxHold, time.Duration(waiting/int64(capacity)+2)*avg+minLimitWait)
}

// hold waits up to d for a request to endpoint to end in this process; it
// reports whether one did. Another replica's slot freeing wakes nobody
// here: the wait then simply runs out.
func (l *endpoints) hold(endpoint string, d time.Duration, size int) bool {
	e := l.get(endpoint)
	e.waiting.Add(1)
	l.waiting.Add(1)
	l.waitingBytes.Add(int64(size))
	defer func() {
		e.waiting.Add(-1)
		l.waiting.Add(-1)
		l.waitingBytes.Add(-int64(size))
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.freed:
		return true
	case <-t.C:
		return false
	}
}

// slotTime is how often, on average, the endpoint is expected to take
// one more request: half its average slot time shared by its capacity
// slots (refused jobs come back a little early and wait here for the slot,
// see holdFor, rather than late, when the endpoint would idle), or the
// spacing of its rate limit in requests per second, whichever is longer.
func (l *endpoints) slotTime(endpoint string, capacity, rate int) time.Duration {
	step := time.Duration(l.get(endpoint).avg.Load()) / 2
	if capacity > 0 {
		step /= time.Duration(capacity)
	}
	if rate > 0 {
		step = max(step, time.Second/time.Duration(rate))
	}
	return max(step, 10*time.Microsecond)
}

// backoff is how long a job refused by endpoint's cap or rate limit should
// stay in JetStream: at least wait. Refused jobs form a virtual queue: each
// is due one slot time after the one refused before it, so a hot
// endpoint's backlog returns at the endpoint's pace instead of every
// refused job coming back, and being refused again, every few
// milliseconds. The result is at least minLimitWait and at most limit.
func (l *endpoints) backoff(endpoint string, slot, wait, limit time.Duration, now time.Time) time.Duration {
	e := l.get(endpoint)
	n := now.UnixNano()
	for {
		old := e.queued.Load()
		at := max(old+int64(slot), n+int64(max(wait, minLimitWait)))
		if at-n > int64(limit) {
			at = n + int64(limit)
		}
		if e.queued.CompareAndSwap(old, max(old, at)) {
			return time.Duration(at - n)
		}
	}
}
