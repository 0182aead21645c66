package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/testenv"
)

// Load and timing of every row.
const (
	rate            = 200                    // events per second, open loop
	warmUp          = 2 * time.Second        // steady load before the fault
	afterRepair     = 3 * time.Second        // steady load after the repair
	receiverLatency = 10 * time.Millisecond  // a healthy receiver's answer time
	endpointTimeout = 1000                   // ms, every endpoint
	slowAnswer      = 800 * time.Millisecond // a slow receiver: most of the timeout
	maxAttempts     = 10
)

// run is one row: a stack, a receiver, a tenant with its endpoints, the
// producer and its ledger.
type run struct {
	t      *testing.T
	s      *Stack
	rcv    *Receiver
	led    *Ledger
	prod   *Producer
	tenant Tenant
	keys   map[string]string // endpoint id -> receiver key

	faultAt, repairedAt time.Time
	restarted           []*testenv.Process
	notes               []string
}

// begin creates the tenant and its endpoints, starts the load and returns
// once deliveries flow and the warm-up has passed.
//
//	a: order.*      every event
//	b: order.paid   four events in ten
//
// Both are healthy, with max_attempts 10: no job should die, so any job in
// the DLQ is a finding (and still accounted for, not missing).
func begin(t *testing.T, s *Stack) *run {
	t.Helper()
	r := &run{t: t, s: s, rcv: newReceiver(t), led: newLedger(), keys: map[string]string{}}
	r.rcv.SetLatency(receiverLatency)
	s.API.Must(t, "POST", "/v1/tenants", adminToken, map[string]string{"name": t.Name()}, http.StatusCreated, &r.tenant)
	r.endpoint(t, "a", []string{"order.*"}, maxAttempts, false)
	r.endpoint(t, "b", []string{"order.paid"}, maxAttempts, false)

	r.prod = &Producer{api: s.API, key: r.tenant.APIKey, tenant: r.tenant.ID, js: s.JS, led: r.led,
		prefix: "ev", rate: rate, max: rate * 120, giveUp: 45 * time.Second}
	r.prod.start()
	t.Cleanup(r.prod.Stop)
	// Steady state: deliveries flow and lag less than half a second of load
	// behind what was accepted (a three-node cluster takes a while).
	var owed, got int
	testenv.Eventually(t, 30*time.Second, func() bool {
		owed, got = r.led.Jobs(), r.rcv.Delivered()
		return got >= rate/2 && owed-got < rate/2
	}, "%s", lazy(func() string {
		return fmt.Sprintf("no steady state before the fault: %d jobs owed, %d delivered", owed, got)
	}))
	time.Sleep(warmUp)
	s.notePids()
	return r
}

func (r *run) endpoint(t *testing.T, key string, events []string, attempts int, failing bool) {
	t.Helper()
	var ep Endpoint
	r.s.API.Must(t, "POST", "/v1/endpoints", r.tenant.APIKey, map[string]any{
		"name": "faults " + key, "url": r.rcv.URL(key), "events": events,
		"max_attempts": attempts, "timeout_ms": endpointTimeout,
	}, http.StatusCreated, &ep)
	r.rcv.Register(t, key, ep.Secret, failing)
	r.keys[ep.ID] = key
}

// fault marks the start of the fault.
func (r *run) fault(what string) {
	r.faultAt = time.Now()
	r.t.Logf("fault: %s (%d events sent, %d jobs delivered so far)", what, r.prod.sent.Load(), r.rcv.Delivered())
}

// repaired marks the end of the fault; restarted are the processes the
// fault restarted on purpose.
func (r *run) repaired(restarted ...*testenv.Process) {
	r.repairedAt = time.Now()
	r.restarted = restarted
	r.t.Logf("repaired after %s", r.repairedAt.Sub(r.faultAt).Round(time.Millisecond))
}

func (r *run) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.t.Logf(format, args...)
}

// hold lets the fault last d under load.
func hold(d time.Duration) { time.Sleep(d) }

// finish keeps the load up a little longer, stops it, waits until every
// accepted event is accounted for and the pipeline is quiet, checks that a
// configuration change still reaches routing, that every service is ready,
// that nothing was restarted but what the fault restarted, and balances the
// books. dupWhy says what duplicates the fault may cause.
func (r *run) finish(fault, dupWhy string) {
	t := r.t
	t.Helper()
	rw := row{fault: fault, window: r.repairedAt.Sub(r.faultAt)}
	defer r.s.saveLogs(t)
	defer func() {
		rw.failed = t.Failed()
		rw.notes = r.notes
		addRow(rw)
	}()

	time.Sleep(afterRepair)
	r.prod.Stop()
	if !r.prod.Wait(60 * time.Second) {
		t.Errorf("the producer still has events in flight 60s after the load ended")
	}
	r.waitAccountedFor(t, 60*time.Second)
	r.waitQuiet(t, 30*time.Second)
	r.probe(t)
	r.s.waitReadyz(t, r.s.Services(), http.StatusOK, 10*time.Second)
	r.s.checkRestarts(t, r.restarted)

	got := r.rcv.snapshot()
	for p := range got {
		if p.endpoint == "p" {
			delete(got, p)
		}
	}
	dead, dlqDups, err := readDLQ(r.s.JS, r.tenant.ID, r.keys)
	if err != nil {
		t.Fatalf("read the DLQ: %v", err)
	}
	b := r.led.reconcile(got, dead, dlqDups, nil)
	rw.events, rw.jobs, rw.delivered, rw.dead, rw.missing, rw.dups = b.events, b.jobs, b.delivered, b.dead, len(b.missing), b.dups
	if b.heldUp > 0 {
		rw.recovered = b.recoveredAt.Sub(r.faultAt)
	}
	requests, aborted := r.rcv.Counters()
	t.Logf("books: %d events accepted (%d via NATS, %d needed retries, %d answered as duplicates), %d jobs: %d delivered, %d dead, %d missing; "+
		"%d duplicate deliveries over %d jobs (%d as a later attempt); %d events held up; %d requests, %d answers cut off",
		b.events, b.viaNATS, b.retried, b.dupAnswers, b.jobs, b.delivered, b.dead, len(b.missing),
		b.dups, b.dupPairs, b.dupRetriedAttempt, b.heldUp, requests, aborted)
	if b.retried > 0 {
		r.note("%d events needed producer retries (same id); %d retries were answered \"duplicate\" (stored before the answer was lost)", b.retried, b.dupAnswers)
	}
	if b.dups > 0 {
		r.note("%d duplicate deliveries over %d jobs (%d as a later Herald-Attempt): %s", b.dups, b.dupPairs, b.dupRetriedAttempt, dupWhy)
	} else {
		r.note("no duplicates (possible ones: %s)", dupWhy)
	}

	if len(b.missing) > 0 {
		n := min(len(b.missing), 10)
		t.Errorf("LEDGER: %d of %d jobs accepted but neither delivered nor dead-lettered, e.g. %v", len(b.missing), b.jobs, b.missing[:n])
	}
	if b.deadUnexpected > 0 {
		t.Errorf("LEDGER: %d jobs of healthy endpoints (max_attempts %d) ended in the DLQ", b.deadUnexpected, maxAttempts)
	}
	if len(b.misrouted) > 0 {
		t.Errorf("LEDGER: %d deliveries to endpoints that do not subscribe, e.g. %s", len(b.misrouted), b.misrouted[0])
	}
	if len(b.refused) > 0 {
		for id, why := range b.refused {
			t.Errorf("LEDGER: %d events never accepted, e.g. %s: %s", len(b.refused), id, why)
			break
		}
	}
	if b.unknown > 0 {
		t.Errorf("LEDGER: %d events delivered that the producer never had accepted", b.unknown)
	}
	if b.dlqDups > 0 {
		r.note("%d dead letters repeat a job already in the DLQ", b.dlqDups)
	}
}

// waitAccountedFor waits until every job the ledger holds was delivered or
// is in the DLQ.
func (r *run) waitAccountedFor(t *testing.T, within time.Duration) {
	t.Helper()
	start := time.Now()
	var left []pair
	var lastDLQ time.Time
	dead := map[pair]time.Time{}
	testenv.Eventually(t, within, func() bool {
		left = left[:0]
		for _, p := range r.led.Pairs() {
			if !r.rcv.Has(p) {
				if _, ok := dead[p]; !ok {
					left = append(left, p)
				}
			}
		}
		if len(left) == 0 {
			return true
		}
		if time.Since(lastDLQ) > time.Second {
			lastDLQ = time.Now()
			d, _, err := readDLQ(r.s.JS, r.tenant.ID, r.keys)
			if err != nil {
				t.Logf("read the DLQ: %v", err)
			} else {
				dead = d
			}
		}
		return false
	}, "%s", lazy(func() string {
		n := min(len(left), 10)
		return fmt.Sprintf("%d jobs neither delivered nor dead-lettered, e.g. %v", len(left), left[:n])
	}))
	t.Logf("every accepted job delivered or dead %s after the load ended", time.Since(start).Round(time.Millisecond))
}

// waitQuiet waits until the router has acked every event stored and no job
// of the tenant is left in DELIVERIES, so that no more duplicates can come.
func (r *run) waitQuiet(t *testing.T, within time.Duration) {
	t.Helper()
	var floor, last uint64
	var jobs int
	testenv.Eventually(t, within, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := r.s.JS.Stream(ctx, "EVENTS")
		if err != nil {
			return false
		}
		last = st.CachedInfo().State.LastSeq
		c, err := r.s.JS.Consumer(ctx, "EVENTS", "router")
		if err != nil {
			return false
		}
		floor = c.CachedInfo().AckFloor.Stream
		ds, err := r.s.JS.Stream(ctx, "DELIVERIES")
		if err != nil {
			return false
		}
		info, err := ds.Info(ctx, jetstream.WithSubjectFilter("herald.deliveries."+r.tenant.ID+".>"))
		if err != nil {
			return false
		}
		jobs = 0
		for _, n := range info.State.Subjects {
			jobs += int(n)
		}
		return floor >= last && jobs == 0
	}, "%s", lazy(func() string {
		return fmt.Sprintf("not quiet: router ack floor %d of %d, %d jobs left in DELIVERIES", floor, last, jobs)
	}))
}

// probe checks that Herald follows configuration changes again after the
// fault: an endpoint is created through ingest, and probe events are posted
// every 250 ms until one reaches it. The router and the senders learn of a
// new endpoint only through their watch of the KV bucket (their local caches
// hold the tenant), so a watch that did not come back shows here. Probe
// events routed before the change arrived do not reach the endpoint (they
// were routed to the endpoints of that moment); how long that lasted is
// reported. It fails after 15 s.
func (r *run) probe(t *testing.T) {
	t.Helper()
	r.endpoint(t, "p", []string{"probe.*"}, maxAttempts, false)
	start := time.Now()
	var ids []string
	for {
		id := fmt.Sprintf("probe-%d", len(ids))
		ids = append(ids, id)
		body := fmt.Sprintf(`{"id":%q,"type":"probe.ping","data":{}}`, id)
		r.s.API.Must(t, "POST", "/v1/events", r.tenant.APIKey, json.RawMessage(body), http.StatusAccepted, nil)
		next := time.Now().Add(250 * time.Millisecond)
		for time.Now().Before(next) {
			for i, id := range ids {
				if r.rcv.Has(pair{id, "p"}) {
					took := time.Since(start).Round(time.Millisecond)
					t.Logf("probe: an endpoint created after the fault got probe event %d of %d, %s after its creation", i+1, len(ids), took)
					if i > 0 {
						r.note("after the repair, an endpoint created through ingest was missed by routing for up to %s (%d probe events routed without it)", took, i)
					}
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("an endpoint created after the fault got none of %d events posted for it in 15s: %s", len(ids), r.probeDiagnosis())
		}
	}
}

// probeDiagnosis says where the probe event stopped: the router's counts
// (unmatched: its cache did not know the new endpoint), the senders' dropped
// jobs (the sender's cache did not know it), and what the streams hold.
func (r *run) probeDiagnosis() string {
	var b strings.Builder
	for _, p := range r.s.Services() {
		m := metrics(p, "herald_router_events_total", "herald_sender_jobs_total", "herald_cache_lookups_total")
		fmt.Fprintf(&b, "\n  %s: %s", r.s.Name(p), m)
		for _, line := range strings.Split(p.Output(), "\n") {
			if strings.Contains(line, "watch") || strings.Contains(line, "dropped") {
				fmt.Fprintf(&b, "\n    log: %s", line)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := r.s.JS.Stream(ctx, "KV_herald-config"); err == nil {
		fmt.Fprintf(&b, "\n  KV stream: last seq %d, leader %v", st.CachedInfo().State.LastSeq, st.CachedInfo().Cluster)
		for ci := range st.ListConsumers(ctx).Info() {
			fmt.Fprintf(&b, "\n  watch consumer %s: delivered stream seq %d, pending %d, waiting %d, created %s, cluster %+v",
				ci.Name, ci.Delivered.Stream, ci.NumPending, ci.NumWaiting, ci.Created.Format("15:04:05.000"), ci.Cluster)
		}
	}
	return b.String()
}

// metrics returns the lines of p's /metrics starting with any of names.
func metrics(p *testenv.Process, names ...string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(p.URL() + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		for _, n := range names {
			if strings.HasPrefix(line, n) {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "; ")
}

// lazy formats its message only when printed.
type lazy func() string

func (l lazy) String() string { return l() }
