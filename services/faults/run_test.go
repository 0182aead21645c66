package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/event"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// Load and timing of every row.
const (
	rate            = 100                    // events per second, open loop
	warmUp          = time.Second            // steady load before the fault
	afterRepair     = 2 * time.Second        // steady load after the repair
	receiverLatency = 10 * time.Millisecond  // a healthy receiver's answer time
	endpointTimeout = 1000                   // ms, every endpoint
	slowAnswer      = 800 * time.Millisecond // a slow receiver: most of the timeout
)

// run is one row on one stack: a receiver, a tenant with its three
// endpoints, the producer and its ledger.
type run struct {
	t      *testing.T
	s      *Stack
	rate   int
	rcv    *Receiver
	led    *Ledger
	prod   *Producer
	tenant Tenant
	keys   map[string]string // endpoint id -> receiver key
	ids    map[string]string // receiver key -> endpoint id

	faultAt, repairedAt time.Time
	restarted           []*testenv.Process
	notes               []string
	loadStopped         bool
}

// begin creates the tenant and its endpoints (see endpoints), starts the
// load at rate and returns once deliveries flow and the warm-up has passed.
func begin(t *testing.T, s *Stack) *run { return beginAt(t, s, rate) }

// beginAt is begin at another rate.
func beginAt(t *testing.T, s *Stack, rate int) *run {
	t.Helper()
	r := &run{t: t, s: s, rate: rate, rcv: newReceiver(t), led: newLedger(), keys: map[string]string{}, ids: map[string]string{}}
	r.rcv.SetLatency(receiverLatency)
	s.API.Must(t, "POST", "/v1/tenants", adminToken, map[string]string{"name": t.Name() + s.name}, http.StatusCreated, &r.tenant)
	for _, e := range endpoints {
		r.endpoint(t, e.key, e.events, e.maxAttempts, e.behave)
	}

	r.prod = &Producer{api: s.API, key: r.tenant.APIKey, tenant: r.tenant.ID, js: s.JS, led: r.led,
		prefix: "ev", rate: rate, max: rate * 120, giveUp: 45 * time.Second}
	r.prod.start()
	t.Cleanup(r.prod.Stop)
	// Steady state: the healthy endpoint's deliveries flow and lag less
	// than half a second of load behind what was accepted (a three-node
	// cluster takes a while).
	var owed, got int
	testenv.Eventually(t, 30*time.Second, func() bool {
		owed, got = r.led.Jobs("ok"), r.rcv.Delivered("ok")
		return got >= rate/2 && owed-got < rate/2
	}, "%s", testenv.Lazy(func() string {
		return fmt.Sprintf("no steady state before the fault: %d jobs owed to the healthy endpoint, %d delivered", owed, got)
	}))
	time.Sleep(warmUp)
	s.notePids()
	return r
}

// endpoint creates an endpoint at the receiver's path key; maxAttempts 0
// leaves Herald's default.
func (r *run) endpoint(t *testing.T, key string, events []string, maxAttempts int, b behaviour) {
	t.Helper()
	in := map[string]any{"name": "faults " + key, "url": r.rcv.URL(key), "events": events, "timeout_ms": endpointTimeout}
	if maxAttempts > 0 {
		in["max_attempts"] = maxAttempts
	}
	var ep Endpoint
	r.s.API.Must(t, "POST", "/v1/endpoints", r.tenant.APIKey, in, http.StatusCreated, &ep)
	r.rcv.Register(t, key, ep.Secret, b)
	r.keys[ep.ID], r.ids[key] = key, ep.ID
}

// fault marks the start of the fault.
func (r *run) fault(what string) {
	r.faultAt = time.Now()
	r.t.Logf("fault: %s (%d events sent, %d delivered to the healthy endpoint so far)", what, r.prod.sent.Load(), r.rcv.Delivered("ok"))
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

// stopLoad keeps the load up for afterRepair, then stops it and waits
// until every event due was accepted or given up. Once per run.
func (r *run) stopLoad() {
	if r.loadStopped {
		return
	}
	r.loadStopped = true
	time.Sleep(afterRepair)
	r.prod.Stop()
	if !r.prod.Wait(60 * time.Second) {
		r.t.Errorf("the producer still has events in flight 60s after the load ended")
	}
}

// finish stops the load, waits until every accepted event is accounted for
// and the pipeline is quiet, checks that a configuration change still
// reaches routing, that every service is ready, that nothing was restarted
// but what the fault restarted, and balances the books to the request:
// every job of the healthy endpoint got exactly one request (attempt 1), of
// the first-fail endpoint two (attempts 1, 2), of the always-fail endpoint
// three (1, 2, 3) and one dead letter, which GET /v1/dlq lists with the
// attempt and the reason; the other two have none. allow says what the
// fault may add to that and why; anything else fails the row.
func (r *run) finish(fault string, allow allowance) {
	t := r.t
	t.Helper()
	rw := row{fault: fault, allow: allow.kinds()}
	if !r.faultAt.IsZero() && !r.repairedAt.IsZero() {
		rw.window = r.repairedAt.Sub(r.faultAt)
	}
	defer r.s.saveLogs(t)
	defer func() {
		rw.failed = t.Failed()
		rw.notes = r.notes
		addRow(rw)
	}()

	r.stopLoad()
	r.waitAccountedFor(t, 90*time.Second)
	r.waitQuiet(t, 30*time.Second)
	r.probe(t)
	r.s.waitReadyz(t, r.s.Services(), http.StatusOK, 10*time.Second)
	r.s.checkRestarts(t, r.restarted)

	got := r.rcv.snapshot()
	for p := range got {
		if p.endpoint == probeKey {
			delete(got, p)
		}
	}
	keys := make([]string, len(endpoints))
	for i, e := range endpoints {
		keys[i] = e.key
	}
	// A 503 asks the client to retry (a leader election after the fault);
	// a client does, for a while.
	var dead map[pair][]dlq.Entry
	var err error
	testenv.Eventually(t, 15*time.Second, func() bool {
		dead, err = r.deadLetters(keys...)
		return err == nil
	}, "%s", testenv.Lazy(func() string { return fmt.Sprintf("read the DLQ through the API: %v", err) }))
	// Herald's own record of each attempt: the unseen allowance checks it,
	// and a failure names each duplicate's outcome classes with it.
	herald, err := attemptRecords(r.s.JS, r.tenant.ID, r.keys)
	if err != nil {
		if allow.unseen != "" {
			t.Fatalf("read the ATTEMPTS stream: %v", err)
		}
		t.Logf("read the ATTEMPTS stream: %v", err)
		herald = nil
	}
	b := r.led.reconcile(got, dead, herald, allow)
	rw.events, rw.jobs, rw.delivered, rw.dead, rw.missing, rw.dups = b.events, b.jobs, b.delivered, b.dead, len(b.missing), b.dups()
	rw.requests = b.requests
	if b.heldUp > 0 && b.recoveredAt.After(r.faultAt) {
		rw.recovered = b.recoveredAt.Sub(r.faultAt)
	}
	requests, aborted := r.rcv.Counters()
	t.Logf("books: %d events accepted (%d via NATS, %d needed retries, %d answered as duplicates), %d jobs: %d delivered, %d dead, %d missing; "+
		"requests %v; duplicates: %d repeated attempt numbers, %d attempts above the expected count, %d second dead letters; "+
		"%d attempts never reached the receiver; %d events held up; %d requests in all, %d answers cut off",
		b.events, b.viaNATS, b.retried, b.dupAnswers, b.jobs, rw.delivered, rw.dead, len(b.missing), b.requests,
		b.repeats, b.beyond, b.deadTwice, b.unseen, b.heldUp, requests, aborted)
	if b.retried > 0 {
		r.note("%d events needed producer retries (same id); %d retries were answered \"duplicate\" (stored before the answer was lost)", b.retried, b.dupAnswers)
	}
	if b.dups() > 0 {
		r.note("duplicates: %d repeated attempt numbers, %d attempts above the expected count, %d second dead letters, over %d jobs, e.g. %s",
			b.repeats, b.beyond, b.deadTwice, len(b.dupExamples), strings.Join(b.dupExamples[:min(3, len(b.dupExamples))], "; "))
	}
	if b.unseen > 0 {
		r.note("%d attempts never reached the receiver; Herald recorded each as a connection failure or timeout", b.unseen)
	}

	for _, f := range b.failures(allow) {
		t.Error(f)
	}
}

// deadLetters lists, through GET /v1/dlq, every dead letter of the
// endpoints named by keys, per pair.
func (r *run) deadLetters(keys ...string) (map[pair][]dlq.Entry, error) {
	out := map[pair][]dlq.Entry{}
	for _, key := range keys {
		cursor := ""
		for {
			path := "/v1/dlq?limit=100&endpoint_id=" + url.QueryEscape(r.ids[key])
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			status, body, err := r.s.API.Call(ctx, http.MethodGet, path, r.tenant.APIKey, nil)
			cancel()
			if err != nil {
				return nil, err
			}
			if status != http.StatusOK {
				return nil, fmt.Errorf("GET %s: %d %s", path, status, body)
			}
			var page dlq.Page
			if err := json.Unmarshal(body, &page); err != nil {
				return nil, fmt.Errorf("GET %s: %w", path, err)
			}
			for _, e := range page.Data {
				p := pair{e.Event.ID, r.keys[e.EndpointID]}
				out[p] = append(out[p], e)
			}
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
	}
	return out, nil
}

// waitAccountedFor waits until every job the ledger holds reached its
// final state: a 2xx from the healthy and first-fail endpoints, a dead
// letter for the always-fail one.
func (r *run) waitAccountedFor(t *testing.T, within time.Duration) {
	t.Helper()
	start := time.Now()
	var left []pair
	var lastDLQ time.Time
	var dead map[pair][]dlq.Entry
	testenv.Eventually(t, within, func() bool {
		left = left[:0]
		for _, p := range r.led.Pairs() {
			if p.endpoint == "af" {
				if len(dead[p]) == 0 {
					left = append(left, p)
				}
			} else if !r.rcv.Has(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return true
		}
		if time.Since(lastDLQ) > time.Second {
			lastDLQ = time.Now()
			if d, err := r.deadLetters("af"); err != nil {
				t.Logf("read the DLQ: %v", err)
			} else {
				dead = d
			}
		}
		return false
	}, "%s", testenv.Lazy(func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "%d jobs neither delivered nor dead-lettered:", len(left))
		got := r.rcv.snapshot()
		for _, p := range left[:min(len(left), 10)] {
			fmt.Fprintf(&b, "\n  %s@%s: receiver saw attempts %v; %s", p.event, p.endpoint, got[p].attempts(), r.jobTrail(p))
		}
		b.WriteString(r.pipelineState())
		return b.String()
	}))
	t.Logf("every accepted job delivered or dead %s after the load ended", time.Since(start).Round(time.Millisecond))
}

// jobTrail says where the job of pair p is in JetStream, for a failure
// message: its schedules pending in RETRIES and the last time one fired.
func (r *run) jobTrail(p pair) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	job := event.JobID(r.tenant.ID, p.event, r.ids[p.endpoint])
	st, err := r.s.JS.Stream(ctx, bus.StreamRetries)
	if err != nil {
		return fmt.Sprintf("job %s: RETRIES: %v", job, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(bus.RetryPrefix+job+".*"))
	if err != nil {
		return fmt.Sprintf("job %s: RETRIES: %v", job, err)
	}
	out := fmt.Sprintf("job %s: schedules pending %v", job, info.State.Subjects)
	due, err := st.GetLastMsgForSubject(ctx, bus.DueSubject(r.tenant.ID, r.ids[p.endpoint], job))
	if err != nil {
		return out + fmt.Sprintf("; no schedule fired (%v)", err)
	}
	j := &heraldv1.DeliveryJob{}
	_ = proto.Unmarshal(due.Data, j)
	return out + fmt.Sprintf("; last fired: RETRIES seq %d at %s with prior_attempts %d", due.Sequence, due.Time.Format("15:04:05.000"), j.PriorAttempts)
}

// pipelineState describes DELIVERIES, RETRIES and the two sender consumers,
// for a failure message.
func (r *run) pipelineState() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var b strings.Builder
	if st, err := r.s.JS.Stream(ctx, bus.StreamDeliveries); err != nil {
		fmt.Fprintf(&b, "\n  DELIVERIES: %v", err)
	} else {
		ci := st.CachedInfo()
		fmt.Fprintf(&b, "\n  DELIVERIES: %d jobs, seq %d..%d, created %s", ci.State.Msgs, ci.State.FirstSeq, ci.State.LastSeq, ci.Created.Format("15:04:05.000"))
	}
	if st, err := r.s.JS.Stream(ctx, bus.StreamRetries); err != nil {
		fmt.Fprintf(&b, "\n  RETRIES: %v", err)
	} else {
		ci := st.CachedInfo()
		fmt.Fprintf(&b, "\n  RETRIES: %d messages, seq %d..%d", ci.State.Msgs, ci.State.FirstSeq, ci.State.LastSeq)
		if info, err := st.Info(ctx, jetstream.WithSubjectFilter(bus.RetryPrefix+">")); err == nil {
			fmt.Fprintf(&b, ", %d schedules pending", len(info.State.Subjects))
		}
	}
	for _, sc := range [][2]string{{bus.StreamDeliveries, bus.ConsumerSender}, {bus.StreamRetries, bus.ConsumerSenderDue}} {
		if c, err := r.s.JS.Consumer(ctx, sc[0], sc[1]); err != nil {
			fmt.Fprintf(&b, "\n  consumer %s: %v", sc[1], err)
		} else {
			ci := c.CachedInfo()
			fmt.Fprintf(&b, "\n  consumer %s: %d pending, %d ack pending, %d redelivered, delivered stream seq %d, ack floor %d",
				sc[1], ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.Delivered.Stream, ci.AckFloor.Stream)
		}
	}
	return b.String()
}

// waitQuiet waits until the router has acked every event stored, no job
// of the tenant is left in DELIVERIES, no retry is scheduled in RETRIES
// and every fired one was acked (the stack serves one tenant under load),
// so that no more requests can come.
func (r *run) waitQuiet(t *testing.T, within time.Duration) {
	t.Helper()
	var floor, last uint64
	var jobs, retries, due int
	testenv.Eventually(t, within, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := r.s.JS.Stream(ctx, bus.StreamEvents)
		if err != nil {
			return false
		}
		last = st.CachedInfo().State.LastSeq
		c, err := r.s.JS.Consumer(ctx, bus.StreamEvents, bus.ConsumerRouter)
		if err != nil {
			return false
		}
		floor = c.CachedInfo().AckFloor.Stream
		ds, err := r.s.JS.Stream(ctx, bus.StreamDeliveries)
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
		rs, err := r.s.JS.Stream(ctx, bus.StreamRetries)
		if err != nil {
			return false
		}
		rinfo, err := rs.Info(ctx, jetstream.WithSubjectFilter(bus.RetryPrefix+">"))
		if err != nil {
			return false
		}
		retries = 0
		for _, n := range rinfo.State.Subjects {
			retries += int(n)
		}
		dc, err := r.s.JS.Consumer(ctx, bus.StreamRetries, bus.ConsumerSenderDue)
		if err != nil {
			return false
		}
		due = int(dc.CachedInfo().NumPending) + dc.CachedInfo().NumAckPending
		return floor >= last && jobs == 0 && retries == 0 && due == 0
	}, "%s", testenv.Lazy(func() string {
		return fmt.Sprintf("not quiet: router ack floor %d of %d, %d jobs left in DELIVERIES, %d retries scheduled, %d fired retries not yet acked", floor, last, jobs, retries, due)
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
	r.endpoint(t, probeKey, []string{"probe.*"}, 0, healthy)
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
				if r.rcv.Has(pair{id, probeKey}) {
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
		for _, line := range logLines(p, "watch", "dropped") {
			fmt.Fprintf(&b, "\n    log: %s", line)
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

// metricSum sums, over procs, the samples of metric name whose labels
// contain label (`reason="concurrency"`; "" for any); -1 if a scrape
// failed.
func metricSum(procs []*testenv.Process, name, label string) float64 {
	sum := 0.0
	for _, p := range procs {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(p.URL() + "/metrics")
		if err != nil {
			return -1
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || !(strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) || !strings.Contains(rest, label) {
				continue
			}
			if v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// logLines returns the lines of p's output containing any of subs.
func logLines(p *testenv.Process, subs ...string) []string {
	var out []string
	for _, line := range strings.Split(p.Output(), "\n") {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				out = append(out, strings.TrimSpace(line))
				break
			}
		}
	}
	return out
}
