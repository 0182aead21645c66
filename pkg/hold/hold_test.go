package hold

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

type env struct {
	t   *testing.T
	ctx context.Context
	url string
	js  jetstream.JetStream
	st  *store.Store
	tn  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	js := connect(t, url)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tn, _, err := st.CreateTenant(ctx, "hold")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, url: url, js: js, st: st, tn: tn.ID}
}

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	js := testenv.ConnectJetStream(t, url)
	return js
}

// endpoint creates an endpoint in state status.
func (e *env) endpoint(status string) string {
	e.t.Helper()
	ep, err := e.st.CreateEndpoint(e.ctx, e.tn, store.Endpoint{Name: "ep", URL: "http://127.0.0.1:9/hook", Events: []string{"*"}, Enabled: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.set(ep.ID, status)
	return ep.ID
}

func (e *env) set(ep, status string) {
	e.t.Helper()
	if _, err := e.st.UpdateEndpoint(e.ctx, e.tn, ep, func(x *store.Endpoint) error { x.SetStatus(status); return nil }); err != nil {
		e.t.Fatal(err)
	}
}

// storeEndpoints reads endpoints straight from the store of record.
type storeEndpoints struct{ st *store.Store }

func (s storeEndpoints) Endpoint(ctx context.Context, tenant, id string) (store.Endpoint, error) {
	return s.st.GetEndpoint(ctx, tenant, id)
}

// store returns a Store reading endpoints from the store of record.
func (e *env) store(js jetstream.JetStream, opts ...Option) *Store {
	return New(js, append([]Option{WithEndpoints(storeEndpoints{e.st}), WithLogger(testenv.Logger(e.t)), WithInterval(time.Hour)}, opts...)...)
}

func job(tenant, ep string, n int) *heraldv1.DeliveryJob {
	id := fmt.Sprintf("evt-%03d", n)
	return &heraldv1.DeliveryJob{
		Id: event.JobID(tenant, id, ep), TenantId: tenant, EndpointId: ep, PriorAttempts: 1,
		Event: &heraldv1.Event{Id: id, TenantId: tenant, Type: "post.published", Data: []byte(`{"n":1}`)},
	}
}

// holdN holds n jobs for ep, numbered from 0, and returns their event ids.
func (e *env) holdN(s *Store, ep string, n int) []string {
	e.t.Helper()
	var ids []string
	for i := range n {
		j := job(e.tn, ep, i)
		if err := s.Hold(e.ctx, j); err != nil {
			e.t.Fatalf("hold %d: %v", i, err)
		}
		ids = append(ids, j.Event.Id)
	}
	return ids
}

// streamJobs returns the event ids of the jobs on subject in stream, in
// stream order.
func (e *env) streamJobs(stream, subject string) []string {
	e.t.Helper()
	st, err := e.js.Stream(e.ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for seq := uint64(1); ; {
		m, err := st.GetMsg(e.ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			e.t.Fatal(err)
		}
		j := &heraldv1.DeliveryJob{}
		if stream == bus.StreamDLQ {
			dl := &heraldv1.DeadLetter{}
			if err := proto.Unmarshal(m.Data, dl); err != nil {
				e.t.Fatal(err)
			}
			j = dl.Job
		} else if err := proto.Unmarshal(m.Data, j); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, j.Event.Id)
		seq = m.Sequence + 1
	}
}

func (e *env) backlog(s *Store, ep string) Backlog {
	e.t.Helper()
	b, err := s.Backlog(e.ctx, e.tn, ep)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// run starts s's releaser until the test ends.
func (e *env) run(s *Store) {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

func TestHoldAndBacklog(t *testing.T) {
	e := newEnv(t)
	s := e.store(e.js)
	ep, other := e.endpoint(store.StatusPaused), e.endpoint(store.StatusPaused)
	if b := e.backlog(s, ep); b != (Backlog{}) {
		t.Fatalf("backlog before anything is held: %+v, want zero", b)
	}
	before := time.Now().Add(-time.Second) // server and test clocks agree to well within that
	e.holdN(s, ep, 3)
	after := time.Now().Add(time.Second)
	e.holdN(s, other, 1)
	// The same job message handed over again (its sender died before
	// acking it) is held once.
	if err := s.Hold(e.ctx, job(e.tn, ep, 0)); err != nil {
		t.Fatal(err)
	}
	b := e.backlog(s, ep)
	if b.Count != 3 || b.Oldest.Before(before) || b.Oldest.After(after) {
		t.Fatalf("backlog %+v, want 3 held between %v and %v", b, before, after)
	}
	all, err := s.Backlogs(e.ctx, e.tn)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[ep].Count != 3 || all[other].Count != 1 || all[ep].Oldest != b.Oldest {
		t.Fatalf("tenant backlogs %+v, want %s: 3 (oldest %v), %s: 1", all, ep, b.Oldest, other)
	}
	some, err := s.Backlogs(e.ctx, e.tn, other, "ep_none")
	if err != nil {
		t.Fatal(err)
	}
	if len(some) != 1 || some[other].Count != 1 || some[other].Oldest.IsZero() {
		t.Fatalf("backlogs of %s and an unknown endpoint: %+v, want %s alone", other, some, other)
	}
	if got := e.streamJobs(bus.StreamHeld, bus.HeldSubject(e.tn, ep)); !slices.Equal(got, []string{"evt-000", "evt-001", "evt-002"}) {
		t.Fatalf("held %v, want evt-000..002 in arrival order", got)
	}
}

// TestReleaseInOrderAfterResume: nothing leaves HELD while the endpoint is
// paused; a resume releases every job, in the order held, promptly (the
// change hook, not the hour-long interval), over several batches.
func TestReleaseInOrderAfterResume(t *testing.T) {
	e := newEnv(t)
	s := e.store(e.js, withBatch(7))
	ep := e.endpoint(store.StatusPaused)
	want := e.holdN(s, ep, 30)
	if s.pass(e.ctx) {
		t.Fatal("a pass over a paused endpoint reports more to move")
	}
	if got := e.streamJobs(bus.StreamDeliveries, bus.DeliverySubject(e.tn, ep)); len(got) != 0 {
		t.Fatalf("released while paused: %v", got)
	}
	if b := e.backlog(s, ep); b.Count != 30 {
		t.Fatalf("backlog while paused %d, want 30", b.Count)
	}
	e.run(s)
	e.set(ep, store.StatusActive)
	s.Changed(e.tn)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.backlog(s, ep).Count == 0 }, "held jobs not released after the resume")
	got := e.streamJobs(bus.StreamDeliveries, bus.DeliverySubject(e.tn, ep))
	if !slices.Equal(got, want) {
		t.Fatalf("released %v,\nwant %v (each once, in the order held)", got, want)
	}
	j := &heraldv1.DeliveryJob{}
	raw := e.getDelivery(ep)
	if err := proto.Unmarshal(raw, j); err != nil || !proto.Equal(j, job(e.tn, ep, 0)) {
		t.Fatalf("released job %v, want it exactly as held (%v)", j, err)
	}
	// Held again after its release (a pause, a resume and a pause within
	// the duplicate window): stored again, not taken for a duplicate.
	e.set(ep, store.StatusPaused)
	if err := s.Hold(e.ctx, job(e.tn, ep, 0)); err != nil {
		t.Fatal(err)
	}
	if b := e.backlog(s, ep); b.Count != 1 {
		t.Fatalf("backlog after holding a released job again: %d, want 1", b.Count)
	}
}

func (e *env) getDelivery(ep string) []byte {
	e.t.Helper()
	st, err := e.js.Stream(e.ctx, bus.StreamDeliveries)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := st.GetMsg(e.ctx, 1, jetstream.WithGetMsgSubject(bus.DeliverySubject(e.tn, ep)))
	if err != nil {
		e.t.Fatal(err)
	}
	return m.Data
}

// TestTwoReleasersPublishOnce: two releasers on their own connections move
// the same backlog at the same time; every job reaches DELIVERIES once.
func TestTwoReleasersPublishOnce(t *testing.T) {
	e := newEnv(t)
	a := e.store(connect(t, e.url), withBatch(50))
	b := e.store(connect(t, e.url), withBatch(50))
	ep := e.endpoint(store.StatusPaused)
	want := e.holdN(a, ep, 400)
	e.set(ep, store.StatusActive)
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.pass(e.ctx) {
			}
		}()
	}
	wg.Wait()
	got := e.streamJobs(bus.StreamDeliveries, bus.DeliverySubject(e.tn, ep))
	if len(got) != len(want) {
		t.Fatalf("%d jobs in DELIVERIES after two releasers, want %d (each once)", len(got), len(want))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("released out of order:\n got %v\nwant %v", got, want)
	}
	if n := e.backlog(a, ep).Count; n != 0 {
		t.Fatalf("%d jobs left in HELD", n)
	}
}

// TestDisabledMeanwhileSkipped: jobs held for an endpoint that is then
// disabled go to the DLQ as skipped, with the reason, in order.
func TestDisabledMeanwhileSkipped(t *testing.T) {
	e := newEnv(t)
	s := e.store(e.js)
	ep := e.endpoint(store.StatusPaused)
	want := e.holdN(s, ep, 3)
	if err := e.st.DisableEndpoint(e.ctx, e.tn, ep, "endpoint answered 410 Gone"); err != nil {
		t.Fatal(err)
	}
	s.pass(e.ctx)
	if got := e.streamJobs(bus.StreamDLQ, bus.DLQSubject(e.tn, ep)); !slices.Equal(got, want) {
		t.Fatalf("DLQ %v, want %v", got, want)
	}
	st, _ := e.js.Stream(e.ctx, bus.StreamDLQ)
	m, err := st.GetMsg(e.ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	dl := &heraldv1.DeadLetter{}
	if err := proto.Unmarshal(m.Data, dl); err != nil {
		t.Fatal(err)
	}
	if !dl.Skipped || dl.Reason != "endpoint disabled (endpoint answered 410 Gone)" || len(dl.Attempts) != 0 || dl.Job.PriorAttempts != 1 {
		t.Fatalf("dead letter skipped=%v reason=%q attempts=%d prior=%d; want skipped, the reason, no attempt, the count kept",
			dl.Skipped, dl.Reason, len(dl.Attempts), dl.Job.PriorAttempts)
	}
	if n := e.backlog(s, ep).Count; n != 0 {
		t.Fatalf("%d jobs left in HELD", n)
	}
	if got := e.streamJobs(bus.StreamDeliveries, bus.DeliverySubject(e.tn, ep)); len(got) != 0 {
		t.Fatalf("jobs of a disabled endpoint sent to DELIVERIES: %v", got)
	}
}

// TestDeletedDropped: jobs held for an endpoint that is then deleted are
// dropped, and a stored event body they alone needed is removed.
func TestDeletedDropped(t *testing.T) {
	e := newEnv(t)
	payloads, err := payload.Open(e.ctx, e.js, payload.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := e.store(e.js, WithPayloads(payloads))
	ep := e.endpoint(store.StatusPaused)
	ref, err := payloads.Put(e.ctx, e.tn, bytes.Repeat([]byte(`"x"`), 40_000))
	if err != nil {
		t.Fatal(err)
	}
	if err := payloads.Hold(e.ctx, ref, 1); err != nil {
		t.Fatal(err)
	}
	j := job(e.tn, ep, 0)
	j.Event.Data, j.Event.PayloadRef = nil, ref
	if err := s.Hold(e.ctx, j); err != nil {
		t.Fatal(err)
	}
	e.holdN(s, ep, 2)
	if err := e.st.DeleteEndpoint(e.ctx, e.tn, ep); err != nil {
		t.Fatal(err)
	}
	s.pass(e.ctx)
	if n := e.backlog(s, ep).Count; n != 0 {
		t.Fatalf("%d jobs of a deleted endpoint left in HELD", n)
	}
	for _, stream := range []string{bus.StreamDeliveries, bus.StreamDLQ} {
		if got := e.streamJobs(stream, bus.HeldPrefix+">"); len(got) != 0 {
			t.Fatalf("jobs of a deleted endpoint moved to %s: %v", stream, got)
		}
	}
	if _, err := payloads.Get(e.ctx, ref); !errors.Is(err, payload.ErrGone) {
		t.Fatalf("event body after its only job was dropped: %v, want gone", err)
	}
}

func TestParseSubject(t *testing.T) {
	for _, c := range []struct{ in, tenant, ep string }{
		{bus.HeldSubject("tn_1", "ep_2"), "tn_1", "ep_2"},
		{"herald.held.tn_1", "", ""},
		{"herald.deliveries.tn_1.ep_2", "", ""},
		{"herald.held..ep", "", ""},
	} {
		tn, ep, ok := parseSubject(c.in)
		if tn != c.tenant || ep != c.ep || ok != (c.tenant != "") {
			t.Errorf("parseSubject(%q) = %q, %q, %v", c.in, tn, ep, ok)
		}
	}
	if !strings.HasPrefix(bus.HeldSubject("a", "b"), bus.HeldPrefix) {
		t.Fatal("HeldSubject does not start with HeldPrefix")
	}
}
