package sender

import (
	"testing"
	"time"
)

func TestBackoffSpacesRefusedJobs(t *testing.T) {
	var l endpoints
	l.get("ep").avg.Store(int64(10 * time.Millisecond))
	slot := l.slotTime("ep", 10, 0) // half of 10 ms shared by 10 slots
	if slot != 500*time.Microsecond {
		t.Fatalf("slot time %v, want 500µs", slot)
	}
	now := time.Unix(1000, 0)
	var last time.Duration
	for i := range 100 {
		d := l.backoff("ep", slot, 0, time.Second, now)
		if i > 0 && d-last != slot {
			t.Fatalf("job %d due %v after the one before, want %v", i, d-last, slot)
		}
		last = d
	}
	if last < 50*time.Millisecond {
		t.Fatalf("100 refused jobs all due within %v: they would return together", last)
	}
	if d := l.backoff("ep", time.Hour, 0, time.Second, now); d != time.Second {
		t.Fatalf("backoff %v beyond its limit of 1s", d)
	}
	// A rate limit's spacing wins over a fast endpoint's, and its hint is a floor.
	if s := l.slotTime("ep", 10, 100); s != 10*time.Millisecond {
		t.Fatalf("slot time with 100/s rate %v, want 10ms", s)
	}
	if d := l.backoff("other", time.Microsecond, 300*time.Millisecond, time.Second, now); d < 300*time.Millisecond {
		t.Fatalf("backoff %v below the limiter's hint", d)
	}
}

func TestHoldOnlyForFastEndpointsAndBounded(t *testing.T) {
	l := endpoints{handoff: Handoff{Wait: 200 * time.Millisecond, EndpointJobs: 1024, Jobs: 4096, Bytes: DefaultHandoffBytes}}
	if d := l.holdFor("new", 10, 1); d != 0 {
		t.Fatalf("an endpoint never measured may hold jobs (%v)", d)
	}
	l.get("slow").avg.Store(int64(3 * time.Second))
	if d := l.holdFor("slow", 10, 1); d != 0 {
		t.Fatalf("a slow endpoint's job may wait in process (%v)", d)
	}
	fast := l.get("fast")
	fast.avg.Store(int64(100 * time.Millisecond / 10)) // 10 ms: 20 per slot within the 200 ms wait
	if d := l.holdFor("fast", 2, 1); d != 0 {
		t.Fatalf("no request in flight here, so nothing will free a slot here, yet a job may wait (%v)", d)
	}
	fast.inFlight.Store(2)
	if d := l.holdFor("fast", 2, 1); d != 2*10*time.Millisecond+minLimitWait {
		t.Fatalf("first in line: hold %v, want two slot times", d)
	}
	fast.waiting.Store(10) // 5 rounds of the 2 slots ahead
	if d := l.holdFor("fast", 2, 1); d != 7*10*time.Millisecond+minLimitWait {
		t.Fatalf("behind 10 jobs: hold %v, want seven slot times", d)
	}
	fast.waiting.Store(40) // 2 slots x 20 requests each within the 200 ms wait
	if d := l.holdFor("fast", 2, 1); d != 0 {
		t.Fatalf("more jobs wait than the endpoint serves within 200 ms, and yet another may (%v)", d)
	}
	fast.waiting.Store(0)
	if d := l.holdFor("fast", 2, DefaultHandoffBytes+1); d != 0 {
		t.Fatal("a job over the byte budget may wait in process")
	}
}

// The handoff's bounds are the sender's options: a shorter wait makes
// fewer endpoints fast and caps every hold; the per-endpoint, per-process
// and byte bounds each turn a job away; unset bounds keep their defaults.
func TestHoldHonoursConfiguredHandoff(t *testing.T) {
	s := New(nil, nil, WithHandoff(Handoff{Wait: 50 * time.Millisecond, EndpointJobs: 3, Jobs: 5, Bytes: 100}))
	l := &s.endpoints
	ten := l.get("ten") // fast under the default 200 ms wait, not under 50 ms
	ten.avg.Store(int64(10 * time.Millisecond))
	ten.inFlight.Store(1)
	if d := l.holdFor("ten", 2, 1); d != 0 {
		t.Fatalf("a 10 ms endpoint is fast under a 50 ms wait (hold %v); the limit is a tenth of it", d)
	}
	fast := l.get("fast")
	fast.avg.Store(int64(5 * time.Millisecond))
	fast.inFlight.Store(2)
	if d := l.holdFor("fast", 2, 1); d != 2*5*time.Millisecond+minLimitWait {
		t.Fatalf("first in line at a 5 ms endpoint: hold %v, want two slot times", d)
	}
	fast.waiting.Store(2) // one round of the 2 requests in flight here ahead
	if d := l.holdFor("fast", 100, 1); d != 3*5*time.Millisecond+minLimitWait {
		t.Fatalf("behind 2 jobs of 3 allowed: hold %v, want three slot times", d)
	}
	fast.waiting.Store(3)
	if d := l.holdFor("fast", 100, 1); d != 0 {
		t.Fatalf("a fourth job waits for one endpoint, bound 3 (hold %v)", d)
	}
	fast.waiting.Store(0)
	if d := l.holdFor("fast", 2, 101); d != 0 {
		t.Fatalf("a 101-byte job waits in process, bound 100 bytes (hold %v)", d)
	}
	l.waiting.Store(5)
	if d := l.holdFor("fast", 2, 1); d != 0 {
		t.Fatalf("a sixth job waits in process, bound 5 (hold %v)", d)
	}
	l.waiting.Store(0)
	fast.avg.Store(int64(4 * time.Millisecond))
	fast.waiting.Store(2) // one round of 2 slots ahead, within 50 ms
	if d := l.holdFor("fast", 2, 1); d != 3*4*time.Millisecond+minLimitWait {
		t.Fatalf("behind 2 jobs: hold %v, want three slot times", d)
	}

	if h := New(nil, nil, WithHandoff(Handoff{Jobs: 7})).endpoints.handoff; h != (Handoff{Wait: DefaultHandoffWait, EndpointJobs: DefaultHandoffEndpointJobs, Jobs: 7, Bytes: DefaultHandoffBytes}) {
		t.Fatalf("unset bounds not defaulted: %+v", h)
	}
	if h := New(nil, nil).endpoints.handoff; h != defaultHandoff {
		t.Fatalf("without WithHandoff the bounds are %+v, want the defaults", h)
	}
}

// A replica holding part of an endpoint's cap (the others hold the rest)
// serves its line at the pace of its own requests in flight, not of the
// whole cap: its jobs are promised that wait, its line holds what those
// requests serve within the handoff's wait, and it spaces the returns of
// its refused jobs by its own slots, so that the replicas together return
// them at the cap's pace.
func TestLineEstimatesTheReplicasShare(t *testing.T) {
	l := endpoints{handoff: Handoff{Wait: 200 * time.Millisecond, EndpointJobs: 1024, Jobs: 4096, Bytes: DefaultHandoffBytes}}
	ep := l.get("ep")
	ep.avg.Store(int64(10 * time.Millisecond))
	if s := l.slotTime("ep", 10, 0); s != 500*time.Microsecond {
		t.Fatalf("nothing in flight here: slot time %v, want half of 10 ms shared by the whole cap of 10", s)
	}
	ep.inFlight.Store(5) // another replica holds the other 5 of the cap of 10
	if s := l.slotTime("ep", 10, 0); s != time.Millisecond {
		t.Fatalf("5 of 10 slots here: slot time %v, want half of 10 ms shared by 5", s)
	}
	ep.waiting.Store(10) // two rounds of this replica's 5 requests ahead
	if d := l.holdFor("ep", 10, 1); d != 4*10*time.Millisecond+minLimitWait {
		t.Fatalf("behind 10 jobs with 5 requests in flight here: hold %v, want four slot times", d)
	}
	ep.waiting.Store(99) // 5 requests x 20 each within the 200 ms wait: room for one more
	if d := l.holdFor("ep", 10, 1); d == 0 {
		t.Fatal("the 100th job may not wait, though this replica serves 100 within the wait")
	}
	ep.waiting.Store(100)
	if d := l.holdFor("ep", 10, 1); d != 0 {
		t.Fatalf("a 101st job may wait (%v), though this replica serves only 100 within the wait", d)
	}
	ep.inFlight.Store(12) // more than the cap (a cap lowered meanwhile): the cap bounds it
	ep.waiting.Store(10)
	if d := l.holdFor("ep", 10, 1); d != 3*10*time.Millisecond+minLimitWait {
		t.Fatalf("12 in flight under a cap of 10: hold %v, want three slot times", d)
	}
}

// TestLineHandsFreedSlotsInOrder: a request's end hands its slot to the
// first job in line, the next end to the next; a job whose wait runs out
// goes on unhanded; stopping sends the rest on at once. Each goes on once,
// and the line's counts come back to zero.
func TestLineHandsFreedSlotsInOrder(t *testing.T) {
	var l endpoints
	type resumed struct {
		id     int
		handed bool
	}
	got := make(chan resumed, 10)
	enqueue := func(id int, d time.Duration) {
		l.enqueue("ep", &waiter{size: 10, resume: func(h handover) { got <- resumed{id, h.handed} }}, d, false)
	}
	next := func() resumed {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no job went on")
			return resumed{}
		}
	}
	enqueue(1, time.Hour)
	enqueue(2, time.Hour)
	enqueue(3, 50*time.Millisecond)
	enqueue(4, time.Hour)
	if !l.queueing("ep") || l.waiting.Load() != 4 || l.waitingBytes.Load() != 40 {
		t.Fatalf("4 jobs in line: queueing %v, %d jobs, %d bytes", l.queueing("ep"), l.waiting.Load(), l.waitingBytes.Load())
	}
	l.end("ep", l.start("ep"), false)
	if r := next(); r != (resumed{1, true}) {
		t.Fatalf("first end: %+v went on, want job 1 handed the slot", r)
	}
	if r := next(); r != (resumed{3, false}) {
		t.Fatalf("then %+v went on, want job 3 at the end of its 50 ms wait", r)
	}
	l.end("ep", l.start("ep"), false)
	if r := next(); r != (resumed{2, true}) {
		t.Fatalf("second end: %+v went on, want job 2 handed the slot", r)
	}
	// A job handed a slot another process took goes back to the front.
	l.enqueue("ep", &waiter{size: 10, resume: func(h handover) { got <- resumed{5, h.handed} }}, time.Hour, true)
	l.end("ep", l.start("ep"), false)
	if r := next(); r != (resumed{5, true}) {
		t.Fatalf("third end: %+v went on, want job 5, put back at the front, handed the slot", r)
	}
	l.stop()
	if r := next(); r != (resumed{4, false}) {
		t.Fatalf("stop: %+v went on, want job 4, unhanded", r)
	}
	select {
	case r := <-got:
		t.Fatalf("job %d went on twice", r.id)
	case <-time.After(100 * time.Millisecond):
	}
	if l.waiting.Load() != 0 || l.waitingBytes.Load() != 0 || l.queueing("ep") {
		t.Fatalf("line's counts not released: %d jobs, %d bytes", l.waiting.Load(), l.waitingBytes.Load())
	}
	l.get("ep").observe(time.Millisecond)
	l.get("ep").inFlight.Store(1)
	if d := l.holdFor("ep", 10, 1); d != 0 {
		t.Fatalf("a stopped sender lets a job wait in line (%v)", d)
	}
}

func TestSweepForgetsOnlyIdleEndpoints(t *testing.T) {
	var l endpoints
	l.end("idle", l.start("idle"), false)
	l.get("busy").inFlight.Store(1)
	l.get("waiting").waiting.Store(1)
	l.end("due", l.start("due"), false)
	for range 2 { // the second refused job returns in an hour
		l.backoff("due", time.Hour, 0, 2*time.Hour, time.Now())
	}
	if n := l.sweep(time.Now().Add(-time.Minute)); n != 0 {
		t.Fatalf("swept %d endpoints used within the last minute", n)
	}
	cut := time.Now().Add(time.Millisecond)
	l.get("recent").used.Store(cut.Add(time.Second).UnixNano()) // used after the cut
	if n := l.sweep(cut); n != 1 {
		t.Fatalf("swept %d endpoints, want 1 (idle)", n)
	}
	for _, id := range []string{"busy", "waiting", "due", "recent"} {
		if _, ok := l.m.Load(id); !ok {
			t.Errorf("endpoint %s forgotten while still in use", id)
		}
	}
	if _, ok := l.m.Load("idle"); ok {
		t.Error("idle endpoint kept")
	}
}
