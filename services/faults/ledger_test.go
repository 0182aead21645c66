package faults

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// subscribers says which receiver endpoints an event type must reach.
var subscribers = map[string][]string{
	"order.created":  {"a"},
	"order.paid":     {"a", "b"},
	"order.refunded": {"a"},
}

// heldUpAfter is the end-to-end time (from when the producer meant to send
// an event to its last job's delivery or dead-letter) beyond which an event
// counts as held up by the fault. Unfaulted, it is tens of milliseconds.
const heldUpAfter = time.Second

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

// Jobs is how many (event, endpoint) jobs the accepted events owe.
func (l *Ledger) Jobs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		n += len(subscribers[e.typ])
	}
	return n
}

// books is the reconciliation of one row.
type books struct {
	events, viaNATS, jobs int
	delivered, dead       int
	deadUnexpected        int // jobs of healthy endpoints in the DLQ
	missing               []pair
	dups                  int // deliveries beyond the first of a pair
	dupPairs              int
	dupRetriedAttempt     int // duplicates sent as a later attempt (a redelivery after an unacked 2xx)
	dlqDups               int // a pair dead-lettered more than once
	misrouted             []string
	unknown               int // delivered, but never accepted by the producer's account
	refused               map[string]string
	retried, dupAnswers   int // events that needed more than one try; tries answered "duplicate"
	heldUp                int
	recoveredAt           time.Time // when the last held-up event completed
}

// reconcile compares the ledger with what the receiver got and what the DLQ
// holds. failing names the endpoints that are meant to dead-letter (none in
// the rows so far).
func (l *Ledger) reconcile(got map[pair]delivery, dead map[pair]time.Time, dlqDups int, failing map[string]bool) books {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := books{refused: l.refusedIDs, dlqDups: dlqDups}
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
		for _, ep := range subscribers[e.typ] {
			p := pair{id, ep}
			b.jobs++
			var done time.Time
			if d, ok := got[p]; ok && d.delivered > 0 {
				b.delivered++
				done = d.first
				if d.delivered > 1 {
					b.dupPairs++
					b.dups += d.delivered - 1
					for _, a := range d.attempts[1:] {
						if a > d.attempts[0] {
							b.dupRetriedAttempt++
						}
					}
				}
			} else if at, ok := dead[p]; ok {
				b.dead++
				done = at
				if !failing[ep] {
					b.deadUnexpected++
				}
			} else {
				b.missing = append(b.missing, p)
				continue
			}
			if done.After(last) {
				last = done
			}
		}
		if !last.IsZero() && last.Sub(e.due) > heldUpAfter {
			b.heldUp++
			if last.After(b.recoveredAt) {
				b.recoveredAt = last
			}
		}
	}
	for p, d := range got {
		e, ok := l.events[p.event]
		if !ok {
			if d.delivered > 0 {
				b.unknown++
			}
			continue
		}
		want := false
		for _, ep := range subscribers[e.typ] {
			want = want || ep == p.endpoint
		}
		if !want || d.typ != e.typ {
			b.misrouted = append(b.misrouted, fmt.Sprintf("%s (a %s) reached endpoint %s as %q", p.event, e.typ, p.endpoint, d.typ))
		}
	}
	sort.Slice(b.missing, func(i, j int) bool {
		if b.missing[i].event != b.missing[j].event {
			return b.missing[i].event < b.missing[j].event
		}
		return b.missing[i].endpoint < b.missing[j].endpoint
	})
	return b
}

// readDLQ reads every dead letter of tenant and returns, per pair, when it
// was dead-lettered, and how many entries repeated a pair. keys maps
// endpoint ids to the receiver's endpoint keys.
func readDLQ(js jetstream.JetStream, tenant string, keys map[string]string) (map[pair]time.Time, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	subj := "herald.dlq." + tenant + ".>"
	st, err := js.Stream(ctx, "DLQ")
	if err != nil {
		return nil, 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	out := map[pair]time.Time{}
	if n == 0 {
		return out, 0, nil
	}
	c, err := js.OrderedConsumer(ctx, "DLQ", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, 0, err
	}
	dups := 0
	for i := 0; i < n; i++ {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return nil, 0, fmt.Errorf("DLQ read %d of %d: %w", i+1, n, err)
		}
		dl := &heraldv1.DeadLetter{}
		if err := proto.Unmarshal(msg.Data(), dl); err != nil || dl.Job == nil || dl.Job.Event == nil {
			return nil, 0, fmt.Errorf("DLQ message on %s is not a DeadLetter: %v", msg.Subject(), err)
		}
		p := pair{dl.Job.Event.Id, keys[dl.Job.EndpointId]}
		if p.endpoint == "" {
			p.endpoint = "?" + dl.Job.EndpointId
		}
		if _, seen := out[p]; seen {
			dups++
			continue
		}
		out[p] = time.UnixMilli(dl.DeadAtUnixMs)
	}
	return out, dups, nil
}
