package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// storeEndpoints reads endpoints straight from the store of record: the
// service's data source, not a stand-in for NATS.
type storeEndpoints struct{ st *store.Store }

func (s storeEndpoints) Endpoint(ctx context.Context, tenant, id string) (store.Endpoint, error) {
	return s.st.GetEndpoint(ctx, tenant, id)
}

func (s storeEndpoints) Endpoints(ctx context.Context, tenant string) ([]store.Endpoint, error) {
	return s.st.ListEndpoints(ctx, tenant)
}

type env struct {
	t   *testing.T
	ctx context.Context
	url string
	js  jetstream.JetStream
	st  *store.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	url := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	js := testenv.ConnectJetStream(t, url)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, url: url, js: js, st: st}
}

func (e *env) tenant(name string) string {
	e.t.Helper()
	tn, _, err := e.st.CreateTenant(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return tn.ID
}

func (e *env) endpoint(tenant string, events []string, enabled bool) string {
	e.t.Helper()
	ep, err := e.st.CreateEndpoint(e.ctx, tenant, store.Endpoint{
		Name: "ep", URL: "http://127.0.0.1:9/hook", Events: events, Enabled: true,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if !enabled {
		if err := e.st.DisableEndpoint(e.ctx, tenant, ep.ID, "test"); err != nil {
			e.t.Fatal(err)
		}
	}
	return ep.ID
}

// dead stores a dead letter as the sender does and returns its sequence.
func (e *env) dead(tenant, ep, eventID, typ string, at time.Time) uint64 {
	e.t.Helper()
	job := &heraldv1.DeliveryJob{
		Id: event.JobID(tenant, eventID, ep), TenantId: tenant, EndpointId: ep, PriorAttempts: 2,
		Event: &heraldv1.Event{Id: eventID, TenantId: tenant, Type: typ, Data: []byte(`{"n":1}`), AcceptedAtUnixMs: at.Add(-time.Second).UnixMilli()},
	}
	dl := &heraldv1.DeadLetter{Job: job, Reason: "attempt budget used", DeadAtUnixMs: at.UnixMilli(),
		Attempts: []*heraldv1.Attempt{{JobId: job.Id, EventId: eventID, Number: 5, AtUnixMs: at.UnixMilli(), StatusCode: 503, ErrorClass: "server_error", ResponseBody: []byte("busy")}}}
	b, err := proto.Marshal(dl)
	if err != nil {
		e.t.Fatal(err)
	}
	ack, err := e.js.PublishMsg(e.ctx, &nats.Msg{Subject: bus.DLQSubject(tenant, ep), Data: b},
		jetstream.WithMsgID(fmt.Sprintf("dead:%s::%d", job.Id, at.UnixNano())))
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// deadLetters stores n dead letters of ep that died now (events e0, e1, ...
// of type t.x) and returns their sequences.
func (e *env) deadLetters(tenant, ep string, n int) []uint64 {
	e.t.Helper()
	at := time.Now().Truncate(time.Millisecond)
	seqs := make([]uint64, 0, n)
	for i := range n {
		seqs = append(seqs, e.dead(tenant, ep, fmt.Sprintf("e%d", i), "t.x", at))
	}
	return seqs
}

// service starts a Service's Run and waits until it has read the replays.
func (e *env) service(opts ...Option) (*Service, func()) {
	e.t.Helper()
	opts = append([]Option{WithLogger(testenv.Logger(e.t))}, opts...)
	s, err := New(e.ctx, e.js, storeEndpoints{e.st}, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		e.t.Fatal("replay service not ready")
	}
	stop := func() { cancel(); <-done }
	e.t.Cleanup(stop)
	return s, stop
}

func (e *env) waitDone(s *Service, tenant, id string, within time.Duration) Replay {
	e.t.Helper()
	var r Replay
	testenv.Eventually(e.t, within, func() bool {
		ctx, cancel := context.WithTimeout(e.ctx, time.Second)
		defer cancel()
		var err error
		r, err = s.Replay(ctx, tenant, id)
		return err == nil && r.State != StateRunning
	}, "replay %s not finished: %+v", id, &r)
	return r
}

type delivered struct {
	seq   uint64
	msgID string
	job   *heraldv1.DeliveryJob
}

// deliveries reads every job stored in DELIVERIES by sequence (a consumer
// would remove them from the work queue).
func (e *env) deliveries() []delivered {
	e.t.Helper()
	return e.stored(bus.StreamDeliveries, func(b []byte) proto.Message {
		j := &heraldv1.DeliveryJob{}
		if err := proto.Unmarshal(b, j); err != nil {
			e.t.Fatal(err)
		}
		return j
	})
}

func (e *env) stored(stream string, decode func([]byte) proto.Message) []delivered {
	e.t.Helper()
	st, err := e.js.Stream(e.ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	state := st.CachedInfo().State
	var out []delivered
	for seq := state.FirstSeq; state.Msgs > 0 && seq <= state.LastSeq; seq++ {
		raw, err := st.GetMsg(e.ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		d := delivered{seq: seq, msgID: raw.Header.Get(nats.MsgIdHdr)}
		if j, ok := decode(raw.Data).(*heraldv1.DeliveryJob); ok {
			d.job = j
		}
		out = append(out, d)
	}
	return out
}

// inDLQ is the set of sequences still in the DLQ.
func (e *env) inDLQ() map[uint64]bool {
	e.t.Helper()
	out := map[uint64]bool{}
	for _, d := range e.stored(bus.StreamDLQ, func([]byte) proto.Message { return nil }) {
		out[d.seq] = true
	}
	return out
}

func ids(p Page) []uint64 {
	out := []uint64{}
	for _, e := range p.Data {
		out = append(out, e.ID)
	}
	return out
}

func TestListFiltersPaginationAndTenants(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.tenant("a"), e.tenant("b")
	a1, a2 := e.endpoint(a, []string{"*"}, true), e.endpoint(a, []string{"*"}, true)
	b1 := e.endpoint(b, []string{"*"}, true)
	base := time.Now().Add(-30 * time.Second).Truncate(time.Millisecond)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	var s [7]uint64
	s[0] = e.dead(a, a1, "e0", "post.published", at(0))
	s[1] = e.dead(a, a2, "e1", "post.deleted", at(1))
	s[2] = e.dead(b, b1, "e2", "post.published", at(2))
	s[3] = e.dead(a, a1, "e3", "user.created", at(3))
	s[4] = e.dead(a, a1, "e4", "post.published", at(4))
	s[5] = e.dead(a, a2, "e5", "post.published", at(5))
	s[6] = e.dead(a, a1, "e6", "post.comment.added", at(6))
	svc, _ := e.service()

	list := func(tenant string, q Query) Page {
		t.Helper()
		p, err := svc.List(e.ctx, tenant, q)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name   string
		tenant string
		q      Query
		want   []uint64
	}{
		{"all of a, oldest first", a, Query{}, []uint64{s[0], s[1], s[3], s[4], s[5], s[6]}},
		{"b sees only its own", b, Query{}, []uint64{s[2]}},
		{"endpoint", a, Query{Filter: Filter{EndpointID: a2}}, []uint64{s[1], s[5]}},
		{"another tenant's endpoint", b, Query{Filter: Filter{EndpointID: a1}}, []uint64{}},
		{"exact type", a, Query{Filter: Filter{EventType: "post.published"}}, []uint64{s[0], s[4], s[5]}},
		{"prefix type", a, Query{Filter: Filter{EventType: "post.*"}}, []uint64{s[0], s[1], s[4], s[5], s[6]}},
		{"since", a, Query{Filter: Filter{Since: at(4)}}, []uint64{s[4], s[5], s[6]}},
		{"until", a, Query{Filter: Filter{Until: at(3)}}, []uint64{s[0], s[1], s[3]}},
		{"range and endpoint", a, Query{Filter: Filter{EndpointID: a1, Since: at(1), Until: at(5)}}, []uint64{s[3], s[4]}},
		{"future", a, Query{Filter: Filter{Since: time.Now().Add(time.Hour)}}, []uint64{}},
	} {
		p := list(c.tenant, c.q)
		if got := ids(p); !slices.Equal(got, c.want) {
			t.Errorf("%s: ids %v, want %v", c.name, got, c.want)
		}
		if p.NextCursor != nil {
			t.Errorf("%s: next_cursor %q on the only page", c.name, *p.NextCursor)
		}
	}

	// Pages of 2 with a type filter: the cursor carries on where the last
	// page stopped, and the last page has no cursor.
	q := Query{Filter: Filter{EventType: "post.*"}, Limit: 2}
	var all []uint64
	pages := 0
	for {
		p := list(a, q)
		pages++
		if len(p.Data) > 2 {
			t.Fatalf("page of %d, limit 2", len(p.Data))
		}
		all = append(all, ids(p)...)
		if p.NextCursor == nil {
			break
		}
		c, err := DecodeCursor(*p.NextCursor)
		if err != nil {
			t.Fatal(err)
		}
		q.Cursor = c
	}
	if want := []uint64{s[0], s[1], s[4], s[5], s[6]}; !slices.Equal(all, want) || pages != 3 {
		t.Fatalf("paged %v in %d pages, want %v in 3", all, pages, want)
	}

	// One entry: the original event, the endpoint, the attempts, the reason.
	got, err := svc.Get(e.ctx, a, s[4])
	if err != nil {
		t.Fatal(err)
	}
	if got.Event.ID != "e4" || got.EndpointID != a1 || got.Reason == "" || len(got.Attempts) != 1 ||
		got.Attempts[0].StatusCode != 503 || string(got.Event.Data) != `{"n":1}` || !got.DeadAt.Equal(at(4)) {
		t.Fatalf("entry %+v", got)
	}
	if _, err := svc.Get(e.ctx, b, s[4]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's dead letter: %v, want ErrNotFound", err)
	}
	if _, err := svc.Get(e.ctx, a, 9999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no such dead letter: %v, want ErrNotFound", err)
	}
}

func TestReplaySingleListFilterAndTimeRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.tenant("a"), e.tenant("b")
	a1, a2 := e.endpoint(a, []string{"*"}, true), e.endpoint(a, []string{"*"}, true)
	b1 := e.endpoint(b, []string{"*"}, true)
	base := time.Now().Add(-30 * time.Second).Truncate(time.Millisecond)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	var s [9]uint64
	for i := range 8 {
		ep := a1
		if i >= 4 {
			ep = a2
		}
		s[i] = e.dead(a, ep, fmt.Sprintf("e%d", i), "post.published", at(i))
	}
	s[8] = e.dead(b, b1, "e0", "post.published", at(8))
	svc, _ := e.service()
	start := func(tenant string, req ReplayRequest) Replay {
		t.Helper()
		r, err := svc.StartReplay(e.ctx, tenant, req)
		if err != nil {
			t.Fatal(err)
		}
		return e.waitDone(svc, tenant, r.ID, 10*time.Second)
	}
	check := func(name string, r Replay, replayed ...uint64) {
		t.Helper()
		if r.State != StateDone || r.Total != len(replayed) || r.Replayed != len(replayed) || r.Failed != 0 ||
			r.StartedAt.IsZero() || r.FinishedAt.IsZero() {
			t.Fatalf("%s: replay %+v, want done with %d replayed", name, r, len(replayed))
		}
		left := e.inDLQ()
		byMsgID := map[string]delivered{}
		for _, d := range e.deliveries() {
			byMsgID[d.msgID] = d
		}
		for _, seq := range replayed {
			if left[seq] {
				t.Errorf("%s: dead letter %d still in the DLQ", name, seq)
			}
			var found *delivered
			for id, d := range byMsgID {
				if strings.HasSuffix(id, fmt.Sprintf(":replay:%d", seq)) {
					found = &d
				}
			}
			if found == nil {
				t.Fatalf("%s: no job in DELIVERIES for dead letter %d", name, seq)
			}
			j := found.job
			if j.PriorAttempts != 0 || j.ReplayId != r.ID || found.msgID != j.Id+fmt.Sprintf(":replay:%d", seq) ||
				j.Id != event.JobID(j.TenantId, j.Event.Id, j.EndpointId) {
				t.Errorf("%s: replayed job %+v (msg id %s)", name, j, found.msgID)
			}
		}
	}

	r := start(a, ReplayRequest{IDs: []uint64{s[0]}})
	check("single", r, s[0])
	if len(e.deliveries()) != 1 {
		t.Fatalf("jobs after a single replay: %d", len(e.deliveries()))
	}
	r = start(a, ReplayRequest{IDs: []uint64{s[1], s[2], s[1]}})
	check("list", r, s[1], s[2])
	r = start(a, ReplayRequest{Filter: &Filter{EndpointID: a2, Since: at(5), Until: at(6)}})
	check("time range", r, s[5], s[6])
	r = start(a, ReplayRequest{Filter: &Filter{EndpointID: a2}})
	check("filter", r, s[4], s[7])
	r = start(a, ReplayRequest{Filter: &Filter{}}) // all: only s[3] is left of a's
	check("all", r, s[3])
	if !e.inDLQ()[s[8]] {
		t.Fatal("another tenant's dead letter was replayed")
	}
	if n := len(e.deliveries()); n != 8 {
		t.Fatalf("jobs in DELIVERIES: %d, want 8", n)
	}

	// Already replayed, another tenant's, unknown: not found, no replay.
	for _, id := range []uint64{s[0], s[8], 12345} {
		if _, err := svc.StartReplay(e.ctx, a, ReplayRequest{IDs: []uint64{id}}); !errors.Is(err, ErrNotFound) {
			t.Errorf("replay of %d: %v, want ErrNotFound", id, err)
		}
	}
	if _, err := svc.StartReplay(e.ctx, a, ReplayRequest{Filter: &Filter{EndpointID: b1}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("filter on another tenant's endpoint: %v, want ErrNotFound", err)
	}
	if _, err := svc.Replay(e.ctx, b, r.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant's replay: %v, want ErrNotFound", err)
	}
	rs, err := svc.Replays(e.ctx, a, 10)
	if err != nil || len(rs) != 5 || rs[0].ID != r.ID {
		t.Fatalf("replays of a: %d (%v), newest %v", len(rs), err, rs)
	}
	if rs, _ := svc.Replays(e.ctx, b, 10); len(rs) != 0 {
		t.Fatalf("replays of b: %v", rs)
	}
}

// A replay's dead letters whose endpoint is disabled or deleted stay in the
// DLQ and are reported; the others go.
func TestReplayKeepsWhatCannotBeSent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("a")
	on, off, gone := e.endpoint(a, []string{"*"}, true), e.endpoint(a, []string{"*"}, false), e.endpoint(a, []string{"*"}, true)
	now := time.Now().Truncate(time.Millisecond)
	s1, s2, s3 := e.dead(a, on, "e1", "t.x", now), e.dead(a, off, "e2", "t.x", now), e.dead(a, gone, "e3", "t.x", now)
	if err := e.st.DeleteEndpoint(e.ctx, a, gone); err != nil {
		t.Fatal(err)
	}
	svc, _ := e.service()
	r, err := svc.StartReplay(e.ctx, a, ReplayRequest{Filter: &Filter{}})
	if err != nil {
		t.Fatal(err)
	}
	r = e.waitDone(svc, a, r.ID, 10*time.Second)
	if r.Total != 3 || r.Replayed != 1 || r.Failed != 2 || len(r.Errors) != 2 {
		t.Fatalf("replay %+v", r)
	}
	left := e.inDLQ()
	if left[s1] || !left[s2] || !left[s3] {
		t.Fatalf("left in DLQ %v; want %d and %d only", left, s2, s3)
	}
}

func TestReplayIsRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("a")
	ep := e.endpoint(a, []string{"*"}, true)
	e.deadLetters(a, ep, 20)
	svc, _ := e.service()
	began := time.Now()
	r, err := svc.StartReplay(e.ctx, a, ReplayRequest{Filter: &Filter{EndpointID: ep}, Rate: 10})
	if err != nil {
		t.Fatal(err)
	}
	r = e.waitDone(svc, a, r.ID, 20*time.Second)
	took := time.Since(began)
	if r.Replayed != 20 {
		t.Fatalf("replay %+v", r)
	}
	// 20 jobs at 10/s: the first at once, then one every 100 ms.
	if took < 1500*time.Millisecond {
		t.Fatalf("20 jobs at 10/s took %s, want at least 1.5 s", took)
	}
	if r.Rate != 10 {
		t.Fatalf("rate %d", r.Rate)
	}
}

// noDuplicates checks that DELIVERIES holds exactly one job per dead letter
// and that none of them is left in the DLQ.
func noDuplicates(t *testing.T, e *env, seqs []uint64) {
	t.Helper()
	jobs := e.deliveries()
	seen := map[string]int{}
	for _, d := range jobs {
		seen[d.msgID]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("job %s stored %d times", id, n)
		}
	}
	if len(jobs) != len(seqs) {
		t.Errorf("jobs in DELIVERIES: %d, want %d", len(jobs), len(seqs))
	}
	left := e.inDLQ()
	for _, s := range seqs {
		if left[s] {
			t.Errorf("dead letter %d replayed but still in the DLQ", s)
		}
	}
}

// A process that dies after a job's PubAck and before deleting its dead
// letter leaves the replay to another process once its lease lapses; the
// republished job is deduplicated and nothing is replayed twice.
func TestReplayResumesAfterCrash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("a")
	ep := e.endpoint(a, []string{"*"}, true)
	seqs := e.deadLetters(a, ep, 20)

	// Process A stalls (as if dead) right after storing the 6th job.
	crashed, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	n := 0
	svcA, err := New(e.ctx, e.js, storeEndpoints{e.st}, WithLogger(testenv.Logger(t)), WithLease(time.Second), withOwner("A"))
	if err != nil {
		t.Fatal(err)
	}
	svcA.afterPublish = func(string, uint64) {
		n++
		if n == 6 {
			once.Do(func() { close(crashed) })
			<-release
		}
	}
	ctxA, stopA := context.WithCancel(e.ctx)
	doneA := make(chan struct{})
	go func() { _ = svcA.Run(ctxA); close(doneA) }()
	r, err := svcA.StartReplay(e.ctx, a, ReplayRequest{Filter: &Filter{EndpointID: ep}, Rate: 200})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-crashed:
	case <-time.After(10 * time.Second):
		t.Fatal("process A did not get to the 6th job")
	}
	if got := len(e.deliveries()); got != 6 {
		t.Fatalf("jobs stored by A: %d, want 6", got)
	}

	// Process B takes over once A's lease lapses.
	svcB, _ := e.service(WithLease(time.Second), withOwner("B"))
	r = e.waitDone(svcB, a, r.ID, 15*time.Second)
	if r.State != StateDone || r.Total != 20 || r.Replayed != 20 || r.Failed != 0 || r.Skipped != 0 {
		t.Fatalf("resumed replay %+v", r)
	}
	noDuplicates(t, e, seqs)

	// A wakes up: its delete finds nothing, its save finds B's record, and
	// it stops without touching anything.
	close(release)
	stopA()
	<-doneA
	noDuplicates(t, e, seqs)
	if r2, _ := svcB.Replay(e.ctx, a, r.ID); r2.State != StateDone || r2.Replayed != 20 {
		t.Fatalf("record after A stopped: %+v", r2)
	}
}

// A process stopped mid-replay releases the lease; the next one continues
// at once, and nothing is replayed twice.
func TestReplayResumesAfterShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("a")
	ep := e.endpoint(a, []string{"*"}, true)
	seqs := e.deadLetters(a, ep, 30)
	svcA, stopA := e.service(withOwner("A"), WithLease(time.Minute))
	r, err := svcA.StartReplay(e.ctx, a, ReplayRequest{IDs: seqs, Rate: 40})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		cur, err := svcA.Replay(e.ctx, a, r.ID)
		return err == nil && cur.Replayed >= 5
	}, "replay did not start")
	stopA()
	paused, err := svcA.Replay(e.ctx, a, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if paused.State != StateRunning || paused.Replayed >= 30 {
		t.Fatalf("after the stop: %+v, want running and not finished", paused)
	}
	if got := len(e.deliveries()); got != paused.Replayed {
		t.Fatalf("jobs %d, replayed %d", got, paused.Replayed)
	}

	// The lease was released: B continues at once, not a minute later.
	svcB, _ := e.service(withOwner("B"), WithLease(time.Minute))
	r = e.waitDone(svcB, a, r.ID, 10*time.Second)
	if r.State != StateDone || r.Replayed != 30 || r.Total != 30 {
		t.Fatalf("resumed replay %+v", r)
	}
	noDuplicates(t, e, seqs)
}

// Jobs that die again while a replay runs are not replayed again by it.
func TestReplayCoversWhatWasDeadWhenItStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("a")
	ep := e.endpoint(a, []string{"*"}, true)
	now := time.Now().Truncate(time.Millisecond)
	first := e.dead(a, ep, "e1", "t.x", now)
	svc, err := New(e.ctx, e.js, storeEndpoints{e.st}, WithLogger(testenv.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	var later atomic.Uint64
	svc.afterPublish = func(string, uint64) {
		if later.Load() == 0 { // the replayed job "dies again" at once
			later.Store(e.dead(a, ep, "e1", "t.x", time.Now()))
		}
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go func() { _ = svc.Run(ctx) }()
	r, err := svc.StartReplay(e.ctx, a, ReplayRequest{Filter: &Filter{EndpointID: ep}})
	if err != nil {
		t.Fatal(err)
	}
	r = e.waitDone(svc, a, r.ID, 10*time.Second)
	left := e.inDLQ()
	if r.Replayed != 1 || left[first] || !left[later.Load()] {
		t.Fatalf("replay %+v, DLQ %v (first %d, later %d)", r, left, first, later.Load())
	}
}

func TestResend(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.tenant("a"), e.tenant("b")
	posts := e.endpoint(a, []string{"post.*"}, true)
	published := e.endpoint(a, []string{"post.published"}, true)
	users := e.endpoint(a, []string{"user.*"}, true)
	off := e.endpoint(a, []string{"*"}, false)
	bEP := e.endpoint(b, []string{"*"}, true)

	// Herald's own (protobuf, via ingest) and a producer's JSON on NATS.
	pub := func(tenant, id, typ, data string) {
		t.Helper()
		ev := &heraldv1.Event{Id: id, TenantId: tenant, Type: typ, Data: []byte(data), AcceptedAtUnixMs: time.Now().UnixMilli()}
		bb, _ := proto.Marshal(ev)
		m := &nats.Msg{Subject: bus.EventSubject(tenant, typ), Data: bb, Header: nats.Header{}}
		m.Header.Set(bus.HeaderEncoding, bus.EncodingProto)
		if _, err := e.js.PublishMsg(e.ctx, m, jetstream.WithMsgID(tenant+"/"+id)); err != nil {
			t.Fatal(err)
		}
	}
	pub(a, "e1", "post.published", `{"v":"a"}`)
	pub(b, "e1", "post.published", `{"v":"b"}`)
	if _, err := e.js.Publish(e.ctx, bus.EventSubject(a, "post.published"), []byte(`{"id":"json-1","data":{"v":"json"}}`)); err != nil {
		t.Fatal(err)
	}
	// Push e1 far back: more than one scan window of another tenant's events.
	for i := range 3000 {
		if _, err := e.js.PublishAsync(bus.EventSubject(b, "noise"), []byte(fmt.Sprintf(`{"id":"n%d","data":{}}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	<-e.js.PublishAsyncComplete()
	svc, _ := e.service()

	before := len(e.deliveries())
	res, err := svc.Resend(e.ctx, a, "e1", "")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, j := range res.Jobs {
		got = append(got, j.EndpointID)
	}
	slices.Sort(got)
	want := []string{posts, published}
	slices.Sort(want)
	if !slices.Equal(got, want) || res.EventID != "e1" {
		t.Fatalf("resent to %v, want %v (not %s, not the disabled %s)", got, want, users, off)
	}
	jobs := e.deliveries()[before:]
	if len(jobs) != 2 {
		t.Fatalf("jobs stored: %d", len(jobs))
	}
	for _, d := range jobs {
		j := d.job
		if j.Event.Id != "e1" || string(j.Event.Data) != `{"v":"a"}` || j.PriorAttempts != 0 || j.ReplayId != res.ID ||
			!strings.HasPrefix(d.msgID, j.Id+":resend:") || j.Id != event.JobID(a, "e1", j.EndpointId) {
			t.Fatalf("resent job %+v, msg id %s", j, d.msgID)
		}
	}

	res, err = svc.Resend(e.ctx, a, "json-1", published)
	if err != nil || len(res.Jobs) != 1 || res.Jobs[0].EndpointID != published {
		t.Fatalf("resend of a producer's JSON event to one endpoint: %+v, %v", res, err)
	}
	if j := e.deliveries()[before+2].job; string(j.Event.Data) != `{"v":"json"}` || j.Event.Id != "json-1" {
		t.Fatalf("resent JSON event %+v", j.Event)
	}
	res, err = svc.Resend(e.ctx, b, "e1", "")
	if err != nil || len(res.Jobs) != 1 || res.Jobs[0].EndpointID != bEP {
		t.Fatalf("b's own e1: %+v, %v", res, err)
	}
	if j := e.deliveries()[before+3].job; string(j.Event.Data) != `{"v":"b"}` {
		t.Fatalf("b resent a's event: %+v", j.Event)
	}

	for _, c := range []struct {
		tenant, id, ep string
		want           error
	}{
		{a, "nope", "", ErrNotFound},
		{a, "n1", "", ErrNotFound}, // b's event
		{a, "e1", users, ErrNoEndpoints},
		{a, "e1", off, ErrEndpointDisabled},
		{a, "e1", bEP, ErrNotFound},
		{b, "json-1", "", ErrNotFound},
	} {
		if _, err := svc.Resend(e.ctx, c.tenant, c.id, c.ep); !errors.Is(err, c.want) {
			t.Errorf("resend %s/%s to %q: %v, want %v", c.tenant, c.id, c.ep, err, c.want)
		}
	}

	// The scan is bounded: a finder that looks 1000 positions back does not
	// reach e1 behind 3000 newer events.
	if _, err := NewStreamFinder(e.js, 1000).FindEvent(e.ctx, a, "e1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bounded finder: %v, want ErrNotFound", err)
	}
}

func TestReplayRequestValidation(t *testing.T) {
	one := uint64(7)
	for _, c := range []struct {
		name string
		in   ReplayInput
		bad  string // the field named, "" when valid
	}{
		{"id", ReplayInput{ID: &one}, ""},
		{"ids", ReplayInput{IDs: []uint64{1, 2}}, ""},
		{"filter", ReplayInput{EndpointID: "ep_1", Since: "2026-11-22T21:00:00Z"}, ""},
		{"all", ReplayInput{All: true, Rate: 5}, ""},
		{"nothing", ReplayInput{}, "id"},
		{"both", ReplayInput{ID: &one, EndpointID: "ep_1"}, "id"},
		{"empty ids", ReplayInput{IDs: []uint64{}}, "ids"},
		{"zero id", ReplayInput{IDs: []uint64{0}}, "ids"},
		{"bad since", ReplayInput{Since: "yesterday"}, "since"},
		{"until before since", ReplayInput{Since: "2026-11-22T21:00:00Z", Until: "2026-11-21T21:00:00Z"}, "until"},
		{"bad type", ReplayInput{EventType: "a..b"}, "event_type"},
		{"bad endpoint", ReplayInput{EndpointID: "a.b"}, "endpoint_id"},
		{"rate", ReplayInput{All: true, Rate: MaxRate + 1}, "rate"},
	} {
		_, err := c.in.Request()
		if c.bad == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.bad+":") {
			t.Errorf("%s: %v, want an error on %s", c.name, err, c.bad)
		}
	}
	for _, c := range []string{"", "x", "aWQ6MQ", EncodeCursor(0)} {
		if _, err := DecodeCursor(c); err == nil {
			t.Errorf("cursor %q accepted", c)
		}
	}
	if n, err := DecodeCursor(EncodeCursor(42)); err != nil || n != 42 {
		t.Errorf("cursor round trip: %d, %v", n, err)
	}
}

// TestSkippedListedAndRecovered: deliveries skipped while their endpoint
// was disabled are listed with the skipped flag, and recover since a time
// brings back exactly those (and the dead ones) recorded since then, once
// the endpoint is enabled again.
func TestSkippedListedAndRecovered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tn := e.tenant("skips")
	ep := e.endpoint(tn, []string{"*"}, false)
	since := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	old := e.skipped(tn, ep, "old", since.Add(-time.Second))
	s1 := e.skipped(tn, ep, "s1", since.Add(time.Second))
	d1 := e.dead(tn, ep, "d1", "post.published", since.Add(2*time.Second))
	s2 := e.skipped(tn, ep, "s2", since.Add(3*time.Second))
	svc, _ := e.service()

	p, err := svc.List(e.ctx, tn, Query{Filter: Filter{EndpointID: ep}})
	if err != nil {
		t.Fatal(err)
	}
	var flags []bool
	for _, en := range p.Data {
		flags = append(flags, en.Skipped)
	}
	if !slices.Equal(ids(p), []uint64{old, s1, d1, s2}) || !slices.Equal(flags, []bool{true, true, false, true}) {
		t.Fatalf("listed %v skipped %v, want [%d %d %d %d] skipped [true true false true]", ids(p), flags, old, s1, d1, s2)
	}
	if p.Data[1].Reason != "endpoint disabled (test)" || len(p.Data[1].Attempts) != 0 {
		t.Fatalf("skipped entry reason %q with %d attempts", p.Data[1].Reason, len(p.Data[1].Attempts))
	}

	if _, err := svc.Recover(e.ctx, tn, ep, since, time.Time{}, 0); !errors.Is(err, ErrEndpointDisabled) {
		t.Fatalf("recover while disabled: %v, want ErrEndpointDisabled", err)
	}
	if _, err := e.st.UpdateEndpoint(e.ctx, tn, ep, func(x *store.Endpoint) error { x.SetStatus(store.StatusActive); return nil }); err != nil {
		t.Fatal(err)
	}
	r, err := svc.Recover(e.ctx, tn, ep, since, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	r = e.waitDone(svc, tn, r.ID, 10*time.Second)
	if r.State != StateDone || r.Total != 3 || r.Replayed != 3 {
		t.Fatalf("recover %+v, want done with 3 replayed", r)
	}
	var events []string
	for _, d := range e.deliveries() {
		events = append(events, d.job.Event.Id)
		if d.job.ReplayId != r.ID || d.job.PriorAttempts != 0 {
			t.Errorf("recovered job %s: replay %q prior %d", d.job.Event.Id, d.job.ReplayId, d.job.PriorAttempts)
		}
	}
	if !slices.Equal(events, []string{"s1", "d1", "s2"}) {
		t.Fatalf("recovered %v, want [s1 d1 s2]", events)
	}
	if left := e.inDLQ(); len(left) != 1 || !left[old] {
		t.Fatalf("left in the DLQ %v, want only %d (before since)", left, old)
	}
}

// skipped stores a dead letter as the sender does for a job whose endpoint
// is disabled: no attempt, marked skipped.
func (e *env) skipped(tenant, ep, eventID string, at time.Time) uint64 {
	e.t.Helper()
	job := &heraldv1.DeliveryJob{
		Id: event.JobID(tenant, eventID, ep), TenantId: tenant, EndpointId: ep,
		Event: &heraldv1.Event{Id: eventID, TenantId: tenant, Type: "post.published", Data: []byte(`{"n":1}`), AcceptedAtUnixMs: at.UnixMilli()},
	}
	b, err := proto.Marshal(&heraldv1.DeadLetter{Job: job, Reason: "endpoint disabled (test)", DeadAtUnixMs: at.UnixMilli(), Skipped: true})
	if err != nil {
		e.t.Fatal(err)
	}
	ack, err := e.js.PublishMsg(e.ctx, &nats.Msg{Subject: bus.DLQSubject(tenant, ep), Data: b},
		jetstream.WithMsgID(fmt.Sprintf("dead:%s::0:%d", job.Id, at.UnixNano())))
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}
