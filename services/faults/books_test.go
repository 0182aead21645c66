package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/dlq"
)

// TestBooks checks the books themselves, without Herald: each kind of
// wrong count the rows exist to catch (the attempt-count bugs a raised
// endpoint cap once hid among them) must fail a row, and what a fault
// explains must pass only when the row allows it.
func TestBooks(t *testing.T) {
	due := time.Now()
	reqs := func(attempts ...int) received {
		g := received{typ: "order.refunded"}
		for i, a := range attempts {
			g.requests = append(g.requests, request{attempt: a, at: due.Add(time.Duration(i) * time.Second), status: 500, written: true})
		}
		return g
	}
	ok := func(g received) received { // the last request was answered 204
		g.requests[len(g.requests)-1].status = 204
		return g
	}
	dead := func(reason string, attempts ...uint32) dlq.Entry {
		e := dlq.Entry{ID: 1, Reason: reason, DeadAt: due.Add(3 * time.Second)}
		for _, a := range attempts {
			e.Attempts = append(e.Attempts, dlq.AttemptView{Number: a, StatusCode: 500, ErrorClass: "server_error"})
		}
		return e
	}
	const gaveUp = "gave up after 3 attempts; last: server_error (HTTP 500)"
	type job struct {
		got  received
		dead []dlq.Entry
	}
	for _, c := range []struct {
		name       string
		ok, ff, af job
		allow      allowance
		want       string // "" when the books balance; else words of the failure
	}{
		{name: "exact", ok: job{got: ok(reqs(1))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3), dead: []dlq.Entry{dead(gaveUp, 3)}}},
		{name: "healthy retried", ok: job{got: ok(reqs(2))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3), dead: []dlq.Entry{dead(gaveUp, 3)}},
			want: "short of their requests"},
		{name: "a wait used an attempt", ok: job{got: ok(reqs(1))}, ff: job{got: ok(reqs(1, 3))}, af: job{got: reqs(1, 2, 3), dead: []dlq.Entry{dead(gaveUp, 3)}},
			want: "short of their requests"},
		{name: "dead before three requests", ok: job{got: ok(reqs(1))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 3), dead: []dlq.Entry{dead(gaveUp, 3)}},
			want: "short of their requests"},
		{name: "never dead", ok: job{got: ok(reqs(1))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3)},
			want: "short of their requests"},
		{name: "above max_attempts", ok: job{got: ok(reqs(1))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3, 4), dead: []dlq.Entry{dead("gave up after 4 attempts; last: x", 4)}},
			allow: allowance{beyond: "x", repeat: "x"}, want: "violations no fault explains"},
		{name: "dead letter of a healthy endpoint", ok: job{got: ok(reqs(1)), dead: []dlq.Entry{dead(gaveUp, 3)}}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3), dead: []dlq.Entry{dead(gaveUp, 3)}},
			want: "violations no fault explains"},
		{name: "wrong dead-letter attempt", ok: job{got: ok(reqs(1))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3), dead: []dlq.Entry{dead(gaveUp, 2)}},
			want: "violations no fault explains"},
		{name: "wrong reason", ok: job{got: ok(reqs(1))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3), dead: []dlq.Entry{dead("endpoint disabled", 3)}},
			want: "violations no fault explains"},
		{name: "repeat not allowed", ok: job{got: ok(reqs(1, 1))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3), dead: []dlq.Entry{dead(gaveUp, 3)}},
			want: "repeated an attempt number"},
		{name: "repeat allowed", ok: job{got: ok(reqs(1, 1))}, ff: job{got: ok(reqs(1, 1))}, af: job{got: reqs(1, 2, 2, 3), dead: []dlq.Entry{dead(gaveUp, 3)}},
			allow: allowance{repeat: "a sender died"}},
		{name: "second dead letter not allowed", ok: job{got: ok(reqs(1))}, ff: job{got: ok(reqs(1, 2))}, af: job{got: reqs(1, 2, 3, 1, 2, 3), dead: []dlq.Entry{dead(gaveUp, 3), dead(gaveUp, 3)}},
			allow: allowance{repeat: "x"}, want: "second dead letter"},
		{name: "lost answer allowed", ok: job{got: ok(reqs(1, 2))}, ff: job{got: ok(reqs(1, 2, 3))}, af: job{got: reqs(1, 2, 3), dead: []dlq.Entry{dead(gaveUp, 3)}},
			allow: allowance{beyond: "answers cut off"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLedger()
			l.accepted("ev-1", "order.refunded", false, due, due, 1, false)
			l.accepted("ev-2", "order.paid", false, due, due, 1, false)
			got := map[pair]received{{"ev-1", "ok"}: c.ok.got, {"ev-2", "ff"}: c.ff.got, {"ev-1", "af"}: c.af.got}
			paid := ok(reqs(1))
			paid.typ = "order.paid"
			got[pair{"ev-2", "ok"}] = paid
			ffGot := c.ff.got
			ffGot.typ = "order.paid"
			got[pair{"ev-2", "ff"}] = ffGot
			dl := map[pair][]dlq.Entry{}
			for p, d := range map[pair][]dlq.Entry{{"ev-1", "ok"}: c.ok.dead, {"ev-2", "ff"}: c.ff.dead, {"ev-1", "af"}: c.af.dead} {
				if len(d) > 0 {
					dl[p] = d
				}
			}
			b := l.reconcile(got, dl, nil, c.allow)
			all := strings.Join(b.failures(c.allow), " | ")
			switch {
			case c.want == "" && all != "":
				t.Errorf("the books do not balance: %s", all)
			case c.want != "" && !strings.Contains(all, c.want):
				t.Errorf("the books pass or fail for another reason (%q); want a %q failure", all, c.want)
			}
		})
	}
}
