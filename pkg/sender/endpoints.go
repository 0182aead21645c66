package sender

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/limit"
)

const (
	// minLimitWait is the shortest wait after a concurrency refusal: shorter
	// ones would only spin jobs through JetStream.
	minLimitWait = time.Millisecond
	// minSlotStep is the closest spacing of the returns of an endpoint's
	// refused jobs (see slotTime).
	minSlotStep = 10 * time.Microsecond
	// fastSlotsPerWait makes an endpoint fast, so that its refused jobs may
	// wait in process for a slot, when its average slot time fits this many
	// times into the handoff's wait (200 ms for the default 2 s). A job
	// first in line then waits about two slot times, and a slow endpoint's
	// jobs never wait here.
	fastSlotsPerWait = 10
)

// Defaults of the in-process handoff (see Handoff). The line holds up to
// 2 s of a hot endpoint's backlog, at most 4,096 jobs: a job in line costs
// about 7 KiB of a sender's peak memory with a 1 KiB event, and one sent
// back to JetStream a nak, a redelivery and a refusal. With 200 ms and
// 1,024 jobs per endpoint, a hot endpoint's backlog went back and forth 1.2
// times per delivery; with these, 0.7-0.9, for a sixth to a fifth more
// deliveries per second, and a sender with 100,000 jobs for one endpoint
// peaks at 65 MiB (20,000 jobs: 0.4-0.5 times, a few % more deliveries,
// 138 MiB; docs/performance.md).
const (
	DefaultHandoffWait         = 2 * time.Second
	DefaultHandoffEndpointJobs = 4096
	DefaultHandoffJobs         = 4096
	DefaultHandoffBytes        = 64 << 20
)

// Handoff bounds the in-process handoff: a job refused by the cap of a
// fast endpoint may wait in this process's line for the endpoint, without
// a worker or a goroutine, to be handed the slot of a request of this
// process as it ends (see endpoints.holdFor), instead of going back to
// JetStream at once. Each job waiting holds its message in memory.
type Handoff struct {
	// Wait is the longest a job waits here before it goes back to
	// JetStream (HERALD_ENDPOINT_HANDOFF_WAIT); keep it far below AckWait.
	// It also says which endpoints are fast: those whose average slot time
	// is at most a tenth of it.
	Wait time.Duration
	// EndpointJobs bounds the jobs waiting for one endpoint's slots
	// (HERALD_ENDPOINT_HANDOFF_JOBS). Fewer wait when the endpoint cannot
	// serve that many within Wait.
	EndpointJobs int
	// Jobs and Bytes bound the jobs waiting in the process, in number and
	// by the size of their messages (HERALD_SENDER_HANDOFF_JOBS,
	// HERALD_SENDER_HANDOFF_BYTES).
	Jobs  int
	Bytes int64
}

// defaultHandoff is the handoff's bounds unless WithHandoff changes them.
var defaultHandoff = Handoff{
	Wait: DefaultHandoffWait, EndpointJobs: DefaultHandoffEndpointJobs,
	Jobs: DefaultHandoffJobs, Bytes: DefaultHandoffBytes,
}

// or returns h with its unset (zero or negative) bounds taken from def.
func (h Handoff) or(def Handoff) Handoff {
	if h.Wait <= 0 {
		h.Wait = def.Wait
	}
	if h.EndpointJobs <= 0 {
		h.EndpointJobs = def.EndpointJobs
	}
	if h.Jobs <= 0 {
		h.Jobs = def.Jobs
	}
	if h.Bytes <= 0 {
		h.Bytes = def.Bytes
	}
	return h
}

// endpoints keeps this process's view of each endpoint it sends to: a
// moving average of how long a request holds a slot, the requests in
// flight, and the line of jobs waiting for a slot. It lets the sender refuse over-cap jobs without a
// Redis round trip, hand a freed slot straight to a waiting job, and space
// the return of the jobs it sends back to JetStream so that they come back
// about when a slot frees instead of all at once.
type endpoints struct {
	m            sync.Map // endpoint id -> *endpointState
	waiting      atomic.Int64
	waitingBytes atomic.Int64
	handoff      Handoff // set before the first job, read only after
	// stopping: the sender stops; no job starts waiting here (see stop).
	stopping atomic.Bool
}

type endpointState struct {
	avg      atomic.Int64 // ns, moving average of how long a slot is held
	inFlight atomic.Int32
	waiting  atomic.Int32 // the line's length, read without the lock
	// line holds the jobs waiting in this process for a slot, first come
	// first served (*waiter, under mu).
	mu   sync.Mutex
	line list.List
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
	v, _ := l.m.LoadOrStore(endpoint, &endpointState{})
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

// end marks a slot free again and learns how long it was held. Unless the
// slot went to a job in line already (passed: see first), it is handed to
// the first job in line, if any, which then asks the limiter for it.
func (l *endpoints) end(endpoint string, started time.Time, passed bool) {
	e := l.get(endpoint)
	e.inFlight.Add(-1)
	e.observe(time.Since(started))
	if !passed && e.waiting.Load() > 0 {
		if w := l.next(e); w != nil {
			go w.resume(handover{handed: true})
		}
	}
}

// first takes the first job out of endpoint's line, nil if there is none:
// the request that ends passes its slot to it.
func (l *endpoints) first(endpoint string) *waiter {
	e := l.get(endpoint)
	if e.waiting.Load() == 0 {
		return nil
	}
	return l.next(e)
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
// replicas hold the cap); as many jobs wait already as this process's
// requests to the endpoint (see parallel) can take within the handoff's
// wait (a hot endpoint's backlog thus waits here only as far as it will be
// served soon), or as its bound allows; or the process's bounds on waiting
// jobs are reached. The wait is about the time
// the jobs ahead of it take, plus two slot times, never more than the
// handoff's wait.
func (l *endpoints) holdFor(endpoint string, capacity, size int) time.Duration {
	h := &l.handoff
	e := l.get(endpoint)
	avg := time.Duration(e.avg.Load())
	if avg <= 0 || avg > h.Wait/fastSlotsPerWait || capacity <= 0 || e.inFlight.Load() <= 0 || l.stopping.Load() {
		return 0
	}
	par := int64(e.parallel(capacity))
	waiting := int64(e.waiting.Load())
	most := min(max(par*int64(h.Wait/avg), par), int64(h.EndpointJobs))
	if waiting >= most || l.waiting.Load() >= int64(h.Jobs) || l.waitingBytes.Load()+int64(size) > h.Bytes {
		return 0
	}
	return min(h.Wait, time.Duration(waiting/par+2)*avg+minLimitWait)
}

// parallel is how many requests to the endpoint this process can expect to
// have in flight: its requests in flight now, at most capacity, or capacity
// when it has none. With several replicas each holds its share of the cap,
// not the whole cap, so its line drains at that pace: a line estimated
// against the whole cap with two replicas promised jobs half the wait they
// got, and about half of them ran out of it, each then asking the limiter
// in vain and going back to JetStream.
func (e *endpointState) parallel(capacity int) int {
	n := int(e.inFlight.Load())
	if n <= 0 || n > capacity {
		return capacity
	}
	return n
}

// A waiter is a job waiting in line for a slot of its endpoint. It is
// data, not a goroutine blocked until a slot frees: a blocked goroutine kept
// its stack, and a line of 20,000 jobs took 150 MiB more than the same jobs
// waiting in JetStream (docs/performance.md). resume runs the job on, in a
// goroutine of its own, with how it came out of line.
type waiter struct {
	resume func(h handover)
	size   int
	timer  *time.Timer
	elem   *list.Element // its place in line; nil once taken out
}

// A handover is how a job in line goes on: handed the slot of a request
// that ended, or not (its wait ran out, or the sender stops). decided: the
// ended request handed its permit over already (limit.Permit.Handover: the
// release and the next grant in one Redis round trip), and permit and
// verdict are the job's; otherwise the job asks the limiter itself.
type handover struct {
	handed  bool
	decided bool
	permit  limit.Permit
	verdict limit.Verdict
}

// enqueue puts w in endpoint's line for at most d: at the back, or at the
// front when first (a job handed a slot that another took meanwhile keeps
// its place). When d runs out it is taken out and resumed.
func (l *endpoints) enqueue(endpoint string, w *waiter, d time.Duration, first bool) {
	e := l.get(endpoint)
	e.mu.Lock()
	defer e.mu.Unlock()
	if first {
		w.elem = e.line.PushFront(w)
	} else {
		w.elem = e.line.PushBack(w)
	}
	e.waiting.Add(1)
	l.waiting.Add(1)
	l.waitingBytes.Add(int64(w.size))
	w.timer = time.AfterFunc(d, func() {
		if l.take(e, w) {
			w.resume(handover{})
		}
	})
}

// take takes w out of e's line; false if it was out already (handed a
// slot, or stopped).
func (l *endpoints) take(e *endpointState, w *waiter) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w.elem == nil {
		return false
	}
	l.remove(e, w)
	return true
}

// next takes the first job out of e's line, nil if there is none.
func (l *endpoints) next(e *endpointState) *waiter {
	e.mu.Lock()
	f := e.line.Front()
	if f == nil {
		e.mu.Unlock()
		return nil
	}
	w := f.Value.(*waiter)
	l.remove(e, w)
	e.mu.Unlock()
	w.timer.Stop() // if it fired meanwhile, its take finds w out and does nothing
	return w
}

// remove takes w, in line, out of it; e.mu is held.
func (l *endpoints) remove(e *endpointState, w *waiter) {
	e.line.Remove(w.elem)
	w.elem = nil
	e.waiting.Add(-1)
	l.waiting.Add(-1)
	l.waitingBytes.Add(-int64(w.size))
}

// stop makes every job waiting here go on at once (resumed as if its wait
// ran out; the sender gives it back to JetStream), and no job wait here
// from now on: a stopping sender does not keep jobs it could give back.
func (l *endpoints) stop() {
	l.stopping.Store(true)
	l.m.Range(func(_, v any) bool {
		e := v.(*endpointState)
		for w := l.next(e); w != nil; w = l.next(e) {
			go w.resume(handover{})
		}
		return true
	})
}

// slotTime is how often, on average, the endpoint is expected to take
// one more request: half its average slot time shared by the slots this
// process holds (see parallel), or the spacing of its rate limit in
// requests per second, whichever is longer. Half, so that refused jobs come
// back a little early and wait here for the slot (see holdFor) rather than
// late, when the endpoint would idle. The other replicas space their own
// refused jobs by their own slots, so that together they return at the
// cap's pace.
func (l *endpoints) slotTime(endpoint string, capacity, rate int) time.Duration {
	e := l.get(endpoint)
	step := time.Duration(e.avg.Load()) / 2
	if capacity > 0 {
		step /= time.Duration(e.parallel(capacity))
	}
	if rate > 0 {
		step = max(step, time.Second/time.Duration(rate))
	}
	return max(step, minSlotStep)
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
