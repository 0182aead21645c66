package bench

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLedgerBalances(t *testing.T) {
	t0 := time.Unix(1000, 0)
	groups := [][]string{{"/a", "/b"}, {"/c"}, {"/a", "/hole"}}
	l := NewLedger("run-m", groups)
	l.MayDeadLetter("/hole")
	l.ExcludeFromLatency("/hole")
	ack := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	l.Note(1, 0, Result{Status: 202, Ack: ack(10)})
	l.Note(2, 1, Result{Status: 202, Ack: ack(20)})
	l.Note(3, 2, Result{Status: 202, Ack: ack(30)})
	l.Note(4, 1, Result{Status: 503, Ack: ack(40)}) // refused, yet delivered later
	if got := l.Expected(); got != 5 {
		t.Fatalf("Expected = %d, want 5", got)
	}
	rec := func(seq int, key string, ms int, status int32) Record {
		return Record{EventID: EventID("run-m", seq), Key: key, RecvNs: ack(ms).UnixNano(), Status: status}
	}
	recs := []Record{
		rec(1, "/a", 15, 200), rec(1, "/b", 16, 500), rec(1, "/b", 1016, 200), rec(1, "/a", 1100, 200), // a duplicate
		rec(2, "/c", 25, 204),
		rec(3, "/a", 40, 200),
		rec(4, "/c", 50, 200),
	}
	dead := []DeadLetter{{EventID: EventID("run-m", 3), Key: "/hole"}}
	a := l.Reconcile(recs, dead, t0, 100*time.Millisecond)
	r := a.Report
	if r.Void {
		t.Fatalf("void: %v", r.Reasons)
	}
	want := LedgerReport{Published: 4, Accepted: 3, Refused: 1, Expected: 5, Delivered: 4, Duplicates: 1, DeadLettered: 1,
		DeliveredAfterRefusal: 1, Balanced: true}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("report\n got %+v\nwant %+v", r, want)
	}
	if a.Latency.Count() != 4 || a.Latency.Max() != 1006_000 { // /b of event 1: acked at 10 ms, delivered at 1016 ms
		t.Fatalf("latency count %d max %d µs", a.Latency.Count(), a.Latency.Max())
	}
	var acc, del float64
	for _, p := range a.Series {
		acc += p.AcceptedPS / 10
		del += p.DeliverPS / 10
	}
	if acc != 3 || del != 4 {
		t.Fatalf("series sums: accepted %v delivered %v", acc, del)
	}
}

func TestLedgerVoids(t *testing.T) {
	t0 := time.Now()
	l := NewLedger("x", [][]string{{"/a"}})
	l.Note(1, 0, Result{Status: 202, Ack: t0})
	l.Note(2, 0, Result{Status: 202, Ack: t0})
	l.Note(3, 0, Result{Status: 202, Ack: t0, Duplicate: true})
	recs := []Record{
		{EventID: "x-000000001", Key: "/a", RecvNs: t0.UnixNano(), Status: 200},
		{EventID: "x-000000001", Key: "/zzz", RecvNs: t0.UnixNano(), Status: 200}, // not subscribed
		{EventID: "x-000000099", Key: "/a", RecvNs: t0.UnixNano(), Status: 200},   // never published
		{EventID: "x-000000002", Key: "/a", RecvNs: t0.UnixNano(), Status: 401},   // bad signature
	}
	dead := []DeadLetter{{EventID: "x-000000001", Key: "/a"}} // not allowed to dead-letter
	r := l.Reconcile(recs, dead, t0, time.Second).Report
	if !r.Void {
		t.Fatal("not void")
	}
	all := strings.Join(r.Reasons, "\n")
	for _, want := range []string{"missing", "never published", "dead letters where none", "signature", "duplicates"} {
		if !strings.Contains(all, want) {
			t.Errorf("reasons lack %q:\n%s", want, all)
		}
	}
	if r.Missing != 1 || r.Unexpected != 2 || r.UnexpectedDead != 1 || r.BadSignatures != 1 || r.DeadAndDelivered != 1 || r.ProducerDuplicates != 1 {
		t.Errorf("report %+v", r)
	}
	if len(r.MissingSample) != 1 || r.MissingSample[0] != "x-000000002 -> /a" {
		t.Errorf("missing sample %v", r.MissingSample)
	}

	empty := NewLedger("y", nil).Reconcile(nil, nil, t0, time.Second).Report
	if !empty.Void {
		t.Error("a phase with nothing accepted must be void")
	}
}

func TestEventIDRoundTrip(t *testing.T) {
	id := EventID("ab-m", 42)
	if seq, ok := ParseEventID("ab-m", id); !ok || seq != 42 {
		t.Fatalf("ParseEventID(%q) = %d, %v", id, seq, ok)
	}
	for _, bad := range []string{"ab-m42", "ab-mx-1", "zz-m-000000001", "ab-m-", "ab-m-abc", "ab-m-000000000"} {
		if _, ok := ParseEventID("ab-m", bad); ok {
			t.Errorf("ParseEventID(%q) accepted", bad)
		}
	}
}
