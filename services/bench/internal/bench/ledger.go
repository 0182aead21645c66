package bench

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Ledger accounts for every event a load phase publishes: each accepted
// event must reach every endpoint of its group, and at the cut-off each
// (event, endpoint) pair is delivered (once or more), dead-lettered, or
// missing. Reconcile says whether the books balance; a run whose books do
// not balance is void: its throughput counts events that were lost, or
// events nobody sent.
type Ledger struct {
	Prefix    string
	groups    [][]string
	pos       []map[string]int // per group: key -> position
	mayDead   map[string]bool
	failing   map[string]bool
	noLatency map[string]bool
	sizes     int

	mu sync.Mutex
	ev []ledgerEvent // by seq-1
}

const (
	evUnsent uint8 = iota
	evAccepted
	evRefused
	evDuplicate // 202 with duplicate: true for a fresh id: the books are wrong
)

type ledgerEvent struct {
	state uint8
	size  uint8
	group int32
	start int64 // unix ns the request was sent
	ack   int64 // unix ns of the producer's 2xx
}

// NewLedger returns a ledger for events with ids made by EventID(prefix, seq).
// groups[g] lists the endpoint keys (sink paths) an event of group g must
// reach.
func NewLedger(prefix string, groups [][]string) *Ledger {
	l := &Ledger{Prefix: prefix, groups: groups, mayDead: map[string]bool{}, failing: map[string]bool{}, noLatency: map[string]bool{}}
	for _, g := range groups {
		m := make(map[string]int, len(g))
		for i, k := range g {
			m[k] = i
		}
		l.pos = append(l.pos, m)
	}
	return l
}

// MayDeadLetter marks endpoints whose jobs are expected to be dead-lettered
// (a blackhole). A dead letter anywhere else voids the run.
func (l *Ledger) MayDeadLetter(keys ...string) {
	for _, k := range keys {
		l.mayDead[k] = true
	}
}

// Failing marks endpoints that fail on purpose (a blackhole, first
// attempts answered 500): Herald may still hold their jobs at the cut-off
// (retry waits, an open breaker). Those pairs are counted as missing and
// reported, but do not void the run; a missing delivery to any other
// endpoint does.
func (l *Ledger) Failing(keys ...string) {
	for _, k := range keys {
		l.failing[k] = true
	}
}

// ExcludeFromLatency leaves endpoints out of the latency figures (the
// blackhole: its requests never complete).
func (l *Ledger) ExcludeFromLatency(keys ...string) {
	for _, k := range keys {
		l.noLatency[k] = true
	}
}

// Note records the outcome of event seq of group. Safe for concurrent use.
func (l *Ledger) Note(seq, group int, r Result) {
	if seq <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq > len(l.ev) {
		n := make([]ledgerEvent, max(seq, 2*len(l.ev)))
		copy(n, l.ev)
		l.ev = n
	}
	e := ledgerEvent{state: evRefused, size: uint8(r.Size), group: int32(group), start: r.Start.UnixNano(), ack: r.Ack.UnixNano()}
	if r.Accepted() {
		e.state = evAccepted
		if r.Duplicate {
			e.state = evDuplicate
		}
	}
	l.ev[seq-1] = e
	l.sizes = max(l.sizes, r.Size+1)
}

// Expected is the number of (event, endpoint) pairs the accepted events
// must reach.
func (l *Ledger) Expected() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.state == evAccepted {
			n += len(l.groups[e.group])
		}
	}
	return n
}

// DeadLetter is a job found in Herald's DLQ, its endpoint already
// translated to the sink key.
type DeadLetter struct {
	EventID string
	Key     string
	Reason  string
}

// LedgerReport is the balance of a phase.
type LedgerReport struct {
	Published int `json:"published"` // events sent
	Accepted  int `json:"accepted"`  // 2xx from Herald
	Refused   int `json:"refused"`   // anything else: not expected anywhere
	// ProducerDuplicates are fresh ids Herald called duplicates.
	ProducerDuplicates int `json:"producer_duplicates,omitempty"`
	Expected           int `json:"expected"` // (event, endpoint) pairs due
	Delivered          int `json:"delivered"`
	Duplicates         int `json:"duplicates"` // 2xx beyond the first per pair
	DeadLettered       int `json:"dead_lettered"`
	Missing            int `json:"missing"` // neither, at the cut-off
	// MissingFailing are the missing pairs of endpoints that fail on
	// purpose: still held by Herald (retry waits, breaker), not lost.
	MissingFailing int `json:"missing_at_failing_endpoints,omitempty"`
	// DeadAndDelivered pairs are counted as delivered.
	DeadAndDelivered int `json:"dead_and_delivered,omitempty"`
	// DeliveredAfterRefusal: an event answered non-2xx was delivered anyway
	// (stored, but the answer was lost): allowed, reported.
	DeliveredAfterRefusal int `json:"delivered_after_refusal,omitempty"`
	// Unexpected: 2xx for an id never published, or at an endpoint outside
	// the event's group.
	Unexpected     int      `json:"unexpected"`
	UnexpectedDead int      `json:"unexpected_dead"`
	BadSignatures  int      `json:"bad_signatures"`
	Balanced       bool     `json:"balanced"`
	Void           bool     `json:"void"`
	Reasons        []string `json:"void_reasons,omitempty"`
	MissingSample  []string `json:"missing_sample,omitempty"`
}

// Point is one bucket of a run's time series, from the load's start.
type Point struct {
	T          float64 `json:"t"`           // bucket start, seconds from the load's start
	AcceptedPS float64 `json:"accepted_ps"` // events accepted per second in the bucket
	DeliverPS  float64 `json:"delivered_ps"`
	P99Ms      float64 `json:"p99_ms"` // of deliveries received in the bucket; 0 if none
}

// Analysis is everything Reconcile works out.
type Analysis struct {
	Report LedgerReport
	// Latency is accepted -> received for the first 2xx of each pair. The
	// accepted instant is Herald's own accepted time (the body's timestamp,
	// whole milliseconds) narrowed by the producer's clock: it lies in
	// [request sent, 202 read] and in [timestamp, timestamp + 1 ms]; the
	// middle of both is taken. Without a timestamp, the 202.
	Latency Histogram
	// FromAck is received minus the producer's reading of the 202: the
	// producer's view. Deliveries often beat the 202 back (negative,
	// counted and clamped to 0).
	FromAck Histogram
	BySize  []Histogram // the same, by size class
	// AcceptedBySize and RefusedBySize count events per size class.
	AcceptedBySize, RefusedBySize []int
	Series                        []Point
	LastDelivery                  time.Time
}

// Reconcile balances the books: records are what the sink answered
// (filtered to this ledger's prefix), dead what Herald's DLQ holds for it.
// t0 is the load's start; bucket the series' resolution.
func (l *Ledger) Reconcile(recs []Record, dead []DeadLetter, t0 time.Time, bucket time.Duration) Analysis {
	l.mu.Lock()
	defer l.mu.Unlock()
	var a Analysis
	rep := &a.Report
	a.BySize = make([]Histogram, l.sizes)
	a.AcceptedBySize = make([]int, l.sizes)
	a.RefusedBySize = make([]int, l.sizes)

	off := make([]int, len(l.ev))
	total := 0
	for i, e := range l.ev {
		switch e.state {
		case evUnsent:
			continue
		case evAccepted:
			off[i] = total
			total += len(l.groups[e.group])
			rep.Accepted++
			a.AcceptedBySize[e.size]++
		case evDuplicate:
			rep.Accepted++
			rep.ProducerDuplicates++
			a.AcceptedBySize[e.size]++
		case evRefused:
			rep.Refused++
			a.RefusedBySize[e.size]++
		}
		rep.Published++
	}
	rep.Expected = total
	counts := make([]uint32, total)
	first := make([]int64, total)
	acceptedMs := make([]int64, total)
	isDead := make([]bool, total)

	slot := func(id, key string) (int, int, bool) { // pair index, seq, ok
		seq, ok := ParseEventID(l.Prefix, id)
		if !ok || seq > len(l.ev) {
			return 0, seq, false
		}
		e := l.ev[seq-1]
		if e.state != evAccepted {
			return 0, seq, false
		}
		p, ok := l.pos[e.group][key]
		if !ok {
			return 0, seq, false
		}
		return off[seq-1] + p, seq, true
	}
	refused := func(seq int) bool {
		return seq > 0 && seq <= len(l.ev) && l.ev[seq-1].state == evRefused
	}

	for _, r := range recs {
		if r.Status == 401 {
			rep.BadSignatures++
			continue
		}
		if !r.OK() {
			continue
		}
		i, seq, ok := slot(r.EventID, r.Key)
		switch {
		case ok:
			counts[i]++
			if first[i] == 0 || r.RecvNs < first[i] {
				first[i] = r.RecvNs
				acceptedMs[i] = r.AcceptedMs
			}
		case refused(seq):
			rep.DeliveredAfterRefusal++
		default:
			rep.Unexpected++
		}
	}
	for _, d := range dead {
		i, seq, ok := slot(d.EventID, d.Key)
		switch {
		case ok:
			isDead[i] = true
			if !l.mayDead[d.Key] {
				rep.UnexpectedDead++
			}
		case refused(seq):
		default:
			rep.UnexpectedDead++
		}
	}

	// Series buckets.
	if bucket <= 0 {
		bucket = time.Second
	}
	type bk struct {
		acc, del int
		h        Histogram
	}
	var buckets []bk
	at := func(ns int64) *bk {
		i := max(int((ns-t0.UnixNano())/int64(bucket)), 0)
		for len(buckets) <= i {
			buckets = append(buckets, bk{})
		}
		return &buckets[i]
	}
	for i, e := range l.ev {
		if e.state != evAccepted {
			continue
		}
		at(e.ack).acc++
		g := l.groups[e.group]
		for p, key := range g {
			j := off[i] + p
			switch {
			case counts[j] > 0:
				rep.Delivered++
				rep.Duplicates += int(counts[j] - 1)
				if isDead[j] {
					rep.DeadAndDelivered++
				}
				b := at(first[j])
				b.del++
				if first[j] > a.LastDelivery.UnixNano() {
					a.LastDelivery = time.Unix(0, first[j])
				}
				if !l.noLatency[key] {
					d := time.Duration(first[j] - acceptedAt(e.start, e.ack, acceptedMs[j]))
					a.Latency.Record(d)
					a.BySize[e.size].Record(d)
					b.h.Record(d)
					a.FromAck.Record(time.Duration(first[j] - e.ack))
				}
			case isDead[j]:
				rep.DeadLettered++
			default:
				rep.Missing++
				if l.failing[key] {
					rep.MissingFailing++
					continue
				}
				if len(rep.MissingSample) < 5 {
					rep.MissingSample = append(rep.MissingSample, EventID(l.Prefix, i+1)+" -> "+key)
				}
			}
		}
	}
	perSec := float64(time.Second) / float64(bucket)
	for i, b := range buckets {
		p := Point{T: float64(i) * bucket.Seconds(), AcceptedPS: float64(b.acc) * perSec, DeliverPS: float64(b.del) * perSec}
		if b.h.Count() > 0 {
			p.P99Ms = math.Round(float64(b.h.Quantile(0.99))) / 1000
		}
		a.Series = append(a.Series, p)
	}

	rep.Balanced = rep.Delivered+rep.DeadLettered+rep.Missing == rep.Expected
	void := func(format string, args ...any) { rep.Reasons = append(rep.Reasons, fmt.Sprintf(format, args...)) }
	if !rep.Balanced {
		void("books do not add up: delivered %d + dead-lettered %d + missing %d != expected %d", rep.Delivered, rep.DeadLettered, rep.Missing, rep.Expected)
	}
	if n := rep.Missing - rep.MissingFailing; n > 0 {
		void("%d of %d deliveries to healthy endpoints missing at the cut-off (e.g. %v)", n, rep.Expected, rep.MissingSample)
	}
	if rep.Unexpected > 0 {
		void("%d deliveries of events never published (or to endpoints not subscribed)", rep.Unexpected)
	}
	if rep.UnexpectedDead > 0 {
		void("%d dead letters where none was expected", rep.UnexpectedDead)
	}
	if rep.BadSignatures > 0 {
		void("%d requests failed signature verification", rep.BadSignatures)
	}
	if rep.ProducerDuplicates > 0 {
		void("%d fresh event ids were answered as duplicates", rep.ProducerDuplicates)
	}
	if rep.Accepted == 0 {
		void("no event was accepted")
	}
	rep.Void = len(rep.Reasons) > 0
	return a
}

// acceptedAt estimates when Herald accepted an event: inside the producer's
// request [start, ack] and inside Herald's timestamp's millisecond, the
// middle of both. When they do not overlap (no timestamp, a raw payload, or
// another clock), the producer's 202.
func acceptedAt(start, ack, heraldMs int64) int64 {
	if heraldMs <= 0 {
		return ack
	}
	lo, hi := max(heraldMs*1e6, start), min(heraldMs*1e6+1e6, ack)
	if start <= 0 || lo > hi {
		return ack
	}
	return lo + (hi-lo)/2
}
