package faults

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/attemptlog"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/store"
)

// endpointSpec is one of the three endpoints every row has.
type endpointSpec struct {
	key    string // the receiver's path, and the ledger's name for it
	kind   string // for the report
	behave behaviour
	events []string
	// maxAttempts is the endpoint's max_attempts; 0 leaves Herald's
	// default (store.DefaultMaxAttempts).
	maxAttempts int
	// want is how many requests each event takes to reach its final state:
	// 1 (delivered at once), 2 (failed, then delivered), 3 (failed three
	// times, then dead-lettered).
	want int
	// slack is how long after it was due an event's job takes unfaulted,
	// retries included (they fire on whole seconds); beyond it, the event
	// was held up by the fault.
	slack time.Duration
}

func (e endpointSpec) attemptLimit() int {
	if e.maxAttempts > 0 {
		return e.maxAttempts
	}
	return store.DefaultMaxAttempts
}

// endpoints of every row; probeKey is the endpoint probe creates after the
// fault, which the books leave out.
var endpoints = []endpointSpec{
	{key: "ok", kind: "healthy", behave: healthy, events: []string{"order.*"}, want: 1, slack: time.Second},
	{key: "ff", kind: "first-fail", behave: firstFail, events: []string{"order.paid"}, want: 2, slack: 3 * time.Second},
	{key: "af", kind: "always-fail", behave: alwaysFail, events: []string{"order.refunded"}, maxAttempts: 3, want: 3, slack: 6 * time.Second},
}

const probeKey = "p"

func spec(key string) (endpointSpec, bool) {
	for _, e := range endpoints {
		if e.key == key {
			return e, true
		}
	}
	return endpointSpec{}, false
}

// subscribers says which endpoints an event type must reach (the endpoints'
// event filters, spelled out).
var subscribers = map[string][]string{
	"order.created":  {"ok"},
	"order.paid":     {"ok", "ff"},
	"order.refunded": {"ok", "af"},
}

// Ledger is the producer's side of the books: every event accepted (a 202,
// or a JetStream ack for those published to NATS), with when it was due and
// when it was accepted.
type Ledger struct {
	mu         sync.Mutex
	events     map[string]*ledgerEvent
	refusedIDs map[string]string
}

type ledgerEvent struct {
	typ   string
	nats  bool
	due   time.Time
	acked time.Time
	tries int
	dup   bool // accepted as a duplicate: an earlier try was stored, its answer lost
}

func newLedger() *Ledger {
	return &Ledger{events: map[string]*ledgerEvent{}, refusedIDs: map[string]string{}}
}

func (l *Ledger) accepted(id, typ string, viaNATS bool, due, at time.Time, tries int, dup bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events[id] = &ledgerEvent{typ: typ, nats: viaNATS, due: due, acked: at, tries: tries, dup: dup}
}

func (l *Ledger) refused(id, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refusedIDs[id] = why
}

// Pairs lists every (event, endpoint) job the accepted events owe.
func (l *Ledger) Pairs() []pair {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []pair
	for id, e := range l.events {
		for _, ep := range subscribers[e.typ] {
			out = append(out, pair{id, ep})
		}
	}
	return out
}

// Jobs is how many jobs the accepted events owe endpoint key.
func (l *Ledger) Jobs(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if slices.Contains(subscribers[e.typ], key) {
			n++
		}
	}
	return n
}

// allowance is what a row's fault explains beyond the exact counts, each
// with the reason; an empty reason allows none. Missing requests, attempt
// numbers above max_attempts and dead letters of endpoints that answer 2xx
// are never allowed.
type allowance struct {
	// repeat: one attempt number reached an endpoint more than once.
	repeat string
	// beyond: the healthy or first-fail endpoint saw attempt numbers
	// above its expected count (an answer it wrote never reached Herald).
	beyond string
	// deadTwice: an always-fail event has more than one dead letter.
	deadTwice string
	// unseen: attempts Herald made never reached the receiver (its
	// listener was closed); each must be in Herald's ATTEMPTS stream as a
	// connection failure or timeout, or it counts as missing.
	unseen string
}

// allowed is one kind of deviation a row's fault explains.
type allowed struct {
	tag  string // in the table's duplicates column
	what string
	why  string
}

// kinds lists what the allowance allows, for the report.
func (a allowance) kinds() []allowed {
	var out []allowed
	for _, k := range []allowed{
		{"repeat", "repeated attempt numbers", a.repeat},
		{"above", "attempts above the expected count", a.beyond},
		{"2nd dead", "second dead letters", a.deadTwice},
		{"unseen", "attempts that never reached the receiver", a.unseen},
	} {
		if k.why != "" {
			out = append(out, k)
		}
	}
	return out
}

// books is the reconciliation of one row.
type books struct {
	events, viaNATS, jobs int
	requests              map[string]int // per endpoint key, for accepted events
	delivered, dead       int
	missing               []string // jobs short of a request or of their final state
	violations            []string // never explained by a fault
	repeats, beyond       int      // requests repeating an attempt number; attempt numbers above the expected count
	deadTwice             int      // dead letters beyond the first of a job
	dupExamples           []string
	unseen                int // attempts verified in ATTEMPTS that never reached the receiver
	unknown               int // requests for events the producer never had accepted
	refused               map[string]string
	retried, dupAnswers   int // events that needed more than one try; tries answered "duplicate"
	heldUp                int
	recoveredAt           time.Time // when the last held-up event completed
}

func (b *books) dups() int { return b.repeats + b.beyond + b.deadTwice }

// reconcile compares the ledger with what the receiver got, the dead
// letters the API lists per pair and, where the row allows unseen attempts,
// Herald's own attempt records (number -> error class per pair).
func (l *Ledger) reconcile(got map[pair]received, dead map[pair][]dlq.Entry, herald map[pair]recorded, allow allowance) books {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := books{refused: l.refusedIDs, requests: map[string]int{}}
	for id, e := range l.events {
		b.events++
		if e.nats {
			b.viaNATS++
		}
		if e.tries > 1 {
			b.retried++
		}
		if e.dup {
			b.dupAnswers++
		}
		var last time.Time
		held := false
		for _, key := range subscribers[e.typ] {
			p := pair{id, key}
			sp, _ := spec(key)
			b.jobs++
			done, ok := b.check(p, sp, got[p], dead[p], herald[p], allow)
			if !ok {
				continue
			}
			if done.Sub(e.due) > sp.slack {
				held = true
				if done.After(last) {
					last = done
				}
			}
		}
		if held {
			b.heldUp++
			if last.After(b.recoveredAt) {
				b.recoveredAt = last
			}
		}
	}
	for p, g := range got {
		e, ok := l.events[p.event]
		if !ok {
			b.unknown++
			continue
		}
		if !slices.Contains(subscribers[e.typ], p.endpoint) || g.typ != e.typ {
			b.violations = append(b.violations, fmt.Sprintf("%s (a %s) reached endpoint %s as %q", p.event, e.typ, p.endpoint, g.typ))
		}
	}
	for p, dls := range dead {
		if _, ok := l.events[p.event]; !ok {
			b.violations = append(b.violations, fmt.Sprintf("dead letter at %s for event %s, which the producer never had accepted", p.endpoint, p.event))
		} else if !slices.Contains(subscribers[l.events[p.event].typ], p.endpoint) {
			b.violations = append(b.violations, fmt.Sprintf("dead letter at %s for %s, which that endpoint does not subscribe to: %q", p.endpoint, p.event, dls[0].Reason))
		}
	}
	sort.Strings(b.missing)
	sort.Strings(b.violations)
	sort.Strings(b.dupExamples)
	return b
}

// failures lists what fails the row: jobs short of a request or of their
// final state, violations, duplicates allow does not explain, events never
// accepted, requests for events never accepted.
func (b *books) failures(allow allowance) []string {
	examples := func(list []string) string { return strings.Join(list[:min(len(list), 10)], "\n  ") }
	var out []string
	if len(b.missing) > 0 {
		out = append(out, fmt.Sprintf("LEDGER: %d of %d jobs short of their requests or final state:\n  %s", len(b.missing), b.jobs, examples(b.missing)))
	}
	if len(b.violations) > 0 {
		out = append(out, fmt.Sprintf("LEDGER: %d violations no fault explains:\n  %s", len(b.violations), examples(b.violations)))
	}
	for _, d := range []struct {
		n         int
		what, why string
	}{
		{b.repeats, "requests repeated an attempt number", allow.repeat},
		{b.beyond, "attempt numbers went above the expected count (healthy 1, first-fail 2)", allow.beyond},
		{b.deadTwice, "always-fail jobs have a second dead letter", allow.deadTwice},
	} {
		if d.n > 0 && d.why == "" {
			out = append(out, fmt.Sprintf("DUPLICATES: %d %s, which this fault does not explain:\n  %s", d.n, d.what, examples(b.dupExamples)))
		}
	}
	for id, why := range b.refused {
		out = append(out, fmt.Sprintf("LEDGER: %d events never accepted, e.g. %s: %s", len(b.refused), id, why))
		break
	}
	if b.unknown > 0 {
		out = append(out, fmt.Sprintf("LEDGER: %d jobs received for events the producer never had accepted", b.unknown))
	}
	return out
}

// check books one job: its requests g, its dead letters dls and Herald's
// record of its attempts (only where unseen attempts are allowed). It
// returns when the job reached its final state, and false if it did not.
func (b *books) check(p pair, sp endpointSpec, g received, dls []dlq.Entry, herald recorded, allow allowance) (time.Time, bool) {
	nums := g.attempts()
	b.requests[p.endpoint] += len(nums)
	seen := map[int]int{}
	top := 0
	for _, n := range nums {
		seen[n]++
		top = max(top, n)
	}
	show := fmt.Sprintf("%s@%s attempts %v", p.event, p.endpoint, nums)
	if top > sp.attemptLimit() {
		b.violations = append(b.violations, fmt.Sprintf("%s: attempt %d above max_attempts %d", show, top, sp.attemptLimit()))
	}
	repeats := len(nums) - len(seen)
	beyond := 0
	for n := range seen {
		if n > sp.want {
			beyond++
		}
	}
	deadTwice := max(len(dls)-1, 0)
	if repeats+beyond+deadTwice > 0 {
		b.repeats += repeats
		b.beyond += beyond
		b.deadTwice += deadTwice
		ex := fmt.Sprintf("%s, %d dead letters", show, len(dls))
		if herald != nil {
			ex += ", Herald recorded " + herald.explain(g) // each attempt's outcome class and timing
		}
		b.dupExamples = append(b.dupExamples, ex)
	}

	var done time.Time
	switch sp.behave {
	case alwaysFail:
		top = sp.maxAttempts // every attempt up to the last must have been made
		if len(dls) == 0 {
			b.missing = append(b.missing, show+", no dead letter")
			return time.Time{}, false
		}
		done = dls[0].DeadAt
		b.dead++
		b.checkDead(show, sp, g, dls)
	default:
		if len(dls) > 0 {
			b.violations = append(b.violations, fmt.Sprintf("%s: dead-lettered (%q) though the endpoint answers 2xx to attempt %d", show, dls[0].Reason, sp.want))
		}
		if done = g.delivered(); done.IsZero() {
			b.missing = append(b.missing, show+", never answered 2xx")
			return time.Time{}, false
		}
		b.delivered++
	}
	var gaps []int
	for n := 1; n <= top; n++ {
		if seen[n] > 0 {
			continue
		}
		if allow.unseen != "" && (herald[n].class == "connection" || herald[n].class == "timeout") {
			b.unseen++
			continue
		}
		gaps = append(gaps, n)
	}
	if len(gaps) > 0 {
		what := "delivered"
		if sp.behave == alwaysFail {
			what = "dead-lettered"
		}
		b.missing = append(b.missing, fmt.Sprintf("%s: %s though attempts %v never reached the receiver (Herald recorded %v)", show, what, gaps, herald))
		return time.Time{}, false
	}
	return done, true
}

// checkDead checks the dead letters of an always-fail job: given up after
// its max_attempts, the last attempt numbered so, answered as the receiver
// answered it.
func (b *books) checkDead(show string, sp endpointSpec, g received, dls []dlq.Entry) {
	want := fmt.Sprintf("gave up after %d attempts; last: ", sp.maxAttempts)
	// Did every request numbered max_attempts get its 500 written? Then the
	// dead letter must say 500; otherwise (cut off) a transport failure.
	answered := false
	for _, q := range g.requests {
		if q.attempt == sp.maxAttempts {
			answered = q.written && q.status == 500
			if !answered {
				break
			}
		}
	}
	for _, dl := range dls {
		bad := func(format string, args ...any) {
			var listed []string
			for _, a := range dl.Attempts {
				listed = append(listed, fmt.Sprintf("%d at %s (%d %s)", a.Number, a.At.Format("15:04:05.000"), a.StatusCode, a.ErrorClass))
			}
			b.violations = append(b.violations, fmt.Sprintf("%s: dead letter %d (dead at %s, attempts listed: %s) %s",
				show, dl.ID, dl.DeadAt.Format("15:04:05.000"), strings.Join(listed, ", "), fmt.Sprintf(format, args...)))
		}
		switch {
		case dl.Skipped:
			bad("is marked skipped (%q): the endpoint was never disabled", dl.Reason)
		case !strings.HasPrefix(dl.Reason, want):
			bad("reason %q; want it to start %q", dl.Reason, want)
		case len(dl.Attempts) == 0:
			bad("lists no attempt")
		default:
			last := dl.Attempts[len(dl.Attempts)-1]
			for _, a := range dl.Attempts {
				if a.Number < 1 || int(a.Number) > sp.maxAttempts {
					bad("lists attempt %d", a.Number)
				}
			}
			switch {
			case int(last.Number) != sp.maxAttempts:
				bad("ends with attempt %d; want %d", last.Number, sp.maxAttempts)
			case answered && last.StatusCode != 500:
				bad("ends with status %d (%s); the receiver answered 500", last.StatusCode, last.ErrorClass)
			case !answered && last.StatusCode != 500 && last.ErrorClass != "connection" && last.ErrorClass != "timeout":
				bad("ends with status %d (%s); want 500 or a transport failure", last.StatusCode, last.ErrorClass)
			}
		}
	}
}

// heraldAttempt is Herald's own record of one attempt, as ATTEMPTS holds it.
type heraldAttempt struct {
	class   string        // the outcome class: "none" for a 2xx
	at      time.Time     // when the sender began the attempt
	latency time.Duration // how long the request took, as the sender measured it
}

// recorded is Herald's record of a pair's attempts, by attempt number.
type recorded map[int]heraldAttempt

// explain shows each recorded attempt's class and, beside it, how long
// after Herald began it the receiver saw its request (arrivals in g): when a healthy attempt timed out, it tells a
// request that reached the receiver late (the sender's side, or the
// machine) from one the receiver was slow to answer.
func (r recorded) explain(g received) string {
	nums := make([]int, 0, len(r))
	for n := range r {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	parts := make([]string, 0, len(nums))
	for _, n := range nums {
		a := r[n]
		part := fmt.Sprintf("%d:%s in %s", n, a.class, a.latency.Round(time.Millisecond))
		// A number sent twice (a repeat) has several arrivals: the one
		// nearest to when Herald began the attempt it recorded is its own.
		var near time.Duration
		found := false
		for _, q := range g.requests {
			if d := q.at.Sub(a.at); q.attempt == n && (!found || d.Abs() < near.Abs()) {
				near, found = d, true
			}
		}
		if found {
			part += fmt.Sprintf(" (reached the receiver %s after it began)", near.Round(time.Millisecond))
		}
		parts = append(parts, part)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// attemptRecords reads Herald's ATTEMPTS stream for tenant: per pair, the
// record of each attempt number. keys maps endpoint ids to receiver keys.
func attemptRecords(js jetstream.JetStream, tenant string, keys map[string]string) (map[pair]recorded, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subj := bus.AttemptSubject(tenant, ">")
	st, err := js.Stream(ctx, bus.StreamAttempts)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	out := map[pair]recorded{}
	if n == 0 {
		return out, nil
	}
	c, err := js.OrderedConsumer(ctx, bus.StreamAttempts, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return nil, fmt.Errorf("ATTEMPTS read %d of %d: %w", i+1, n, err)
		}
		recs, err := attemptlog.Decode(msg.Headers(), msg.Data())
		if err != nil {
			return nil, fmt.Errorf("ATTEMPTS message on %s holds no attempts: %w", msg.Subject(), err)
		}
		for _, a := range recs {
			p := pair{a.EventId, keys[a.EndpointId]}
			if out[p] == nil {
				out[p] = recorded{}
			}
			out[p][int(a.Number)] = heraldAttempt{
				class:   a.ErrorClass,
				at:      time.UnixMilli(a.AtUnixMs),
				latency: time.Duration(a.LatencyUs) * time.Microsecond,
			}
		}
	}
	return out, nil
}
