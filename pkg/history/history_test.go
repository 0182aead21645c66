package history_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js := testenv.JetStream(t)
	if err := bus.EnsureStreams(ctxFor(t), js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	return js
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// run starts a projector over idx until the test ends.
func run(t *testing.T, js jetstream.JetStream, idx history.Index) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := history.NewProjector(js, idx, history.WithLogger(testenv.Logger(t)), history.WithMarkerCheck(100*time.Millisecond))
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-p.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("projector not ready")
	}
}

func publishAttempt(t *testing.T, js jetstream.JetStream, a *heraldv1.Attempt) {
	t.Helper()
	b, _ := proto.Marshal(a)
	if _, err := js.Publish(ctxFor(t), bus.AttemptSubject(a.TenantId, a.EndpointId), b); err != nil {
		t.Fatal(err)
	}
}

func attempt(tenant, ep, ev string, n int, at time.Time, status int) *heraldv1.Attempt {
	a := &heraldv1.Attempt{JobId: event.JobID(tenant, ev, ep), EventId: ev, TenantId: tenant, EndpointId: ep,
		Number: uint32(n), AtUnixMs: at.UnixMilli(), StatusCode: int32(status), EventType: "post.published",
		ErrorClass: "none", State: history.StateDelivered, LatencyUs: 1500, ResponseBody: []byte("ok")}
	if status >= 300 || status == 0 {
		a.ErrorClass, a.State, a.Error = "server_error", history.StateRetrying, "status 500"
		a.NextAttemptAtUnixMs = at.Add(time.Minute).UnixMilli()
	}
	return a
}

// indexes runs f against both index implementations.
func indexes(t *testing.T, f func(t *testing.T, js jetstream.JetStream, idx history.Index)) {
	t.Run("redis", func(t *testing.T) {
		url, prefix := testenv.Redis(t)
		f(t, jetStream(t), history.NewRedis(redisClient(t, url), prefix, time.Hour))
	})
	t.Run("memory", func(t *testing.T) {
		f(t, jetStream(t), history.NewMemory(time.Hour))
	})
}

func TestAttemptsNewestFirstWithCursorsAndStatus(t *testing.T) {
	indexes(t, func(t *testing.T, js jetstream.JetStream, idx history.Index) {
		run(t, js, idx)
		ctx := ctxFor(t)
		base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
		var want []string // newest first
		for i := range 7 {
			status := 200
			if i%3 == 0 {
				status = 500
			}
			// two attempts share a millisecond: ties are ordered too
			at := base.Add(time.Duration(i/2*2) * time.Second)
			a := attempt("tn_1", "ep_1", fmt.Sprintf("e%d", i), 1, at, status)
			publishAttempt(t, js, a)
			want = append([]string{history.AttemptID(a)}, want...)
		}
		// another endpoint and another tenant stay apart
		publishAttempt(t, js, attempt("tn_1", "ep_2", "x", 1, base, 200))
		publishAttempt(t, js, attempt("tn_2", "ep_1", "x", 1, base, 200))
		r := history.NewReader(idx, js)
		testenv.Eventually(t, 10*time.Second, func() bool {
			p, err := r.Attempts(ctx, "tn_1", "ep_1", history.Query{Limit: 100})
			return err == nil && len(p.Attempts) == 7
		}, "attempts not projected")

		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			p, err := r.Attempts(ctx, "tn_1", "ep_1", history.Query{Limit: 3, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range p.Attempts {
				got = append(got, a.ID)
			}
			if p.NextCursor == "" {
				if pages != 2 {
					t.Fatalf("pages = %d, want 3", pages+1)
				}
				break
			}
			cursor = p.NextCursor
		}
		// ids with equal times sort by id, descending; compare as sets per time
		if len(got) != 7 {
			t.Fatalf("got %d attempts over the pages, want 7: %v", len(got), got)
		}
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Fatalf("attempt %s listed twice", id)
			}
			seen[id] = true
		}
		p, _ := r.Attempts(ctx, "tn_1", "ep_1", history.Query{Limit: 100})
		for i := 1; i < len(p.Attempts); i++ {
			if p.Attempts[i].At.After(p.Attempts[i-1].At) {
				t.Fatalf("not newest first: %v after %v", p.Attempts[i].At, p.Attempts[i-1].At)
			}
		}
		failed, _ := r.Attempts(ctx, "tn_1", "ep_1", history.Query{Limit: 100, Status: history.StatusFailed})
		ok, _ := r.Attempts(ctx, "tn_1", "ep_1", history.Query{Limit: 100, Status: history.StatusSucceeded})
		if len(failed.Attempts) != 3 || len(ok.Attempts) != 4 {
			t.Fatalf("failed %d succeeded %d, want 3 and 4", len(failed.Attempts), len(ok.Attempts))
		}
		for _, a := range failed.Attempts {
			if a.Status != history.StatusFailed || a.ResponseStatus != 500 || a.NextAttemptAt == nil || a.State != history.StateRetrying {
				t.Fatalf("failed attempt %+v", a)
			}
		}
		if _, err := r.Attempts(ctx, "tn_1", "ep_1", history.Query{Limit: 3, Cursor: "!!"}); err != history.ErrBadCursor {
			t.Fatalf("bad cursor: %v", err)
		}
		other, _ := r.Attempts(ctx, "tn_2", "ep_2", history.Query{Limit: 10})
		if len(other.Attempts) != 0 {
			t.Fatalf("tn_2/ep_2 has %d attempts, want 0", len(other.Attempts))
		}
	})
}

func TestEventStatesPerEndpoint(t *testing.T) {
	indexes(t, func(t *testing.T, js jetstream.JetStream, idx history.Index) {
		run(t, js, idx)
		ctx := ctxFor(t)
		if _, err := ingest.New(js).Publish(ctx, "tn_1", event.Input{ID: "ev-1", Type: "post.published", Data: []byte(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		publishAttempt(t, js, attempt("tn_1", "ep_ok", "ev-1", 1, now.Add(-3*time.Second), 500))
		publishAttempt(t, js, attempt("tn_1", "ep_ok", "ev-1", 2, now.Add(-2*time.Second), 200))
		publishAttempt(t, js, attempt("tn_1", "ep_retry", "ev-1", 1, now.Add(-time.Second), 503))
		dead := attempt("tn_1", "ep_dead", "ev-1", 1, now.Add(-time.Second), 500)
		dead.State = history.StateDead
		publishAttempt(t, js, dead)
		job := &heraldv1.DeliveryJob{Id: "job_d", TenantId: "tn_1", EndpointId: "ep_dead", Event: &heraldv1.Event{Id: "ev-1", TenantId: "tn_1", Type: "post.published"}}
		dl, _ := proto.Marshal(&heraldv1.DeadLetter{Job: job, Reason: "gave up after 1 attempts", DeadAtUnixMs: now.UnixMilli()})
		if _, err := js.Publish(ctx, bus.DLQSubject("tn_1", "ep_dead"), dl); err != nil {
			t.Fatal(err)
		}
		// dead-lettered without an attempt (endpoint disabled)
		job2 := &heraldv1.DeliveryJob{Id: "job_x", TenantId: "tn_1", EndpointId: "ep_off", Event: &heraldv1.Event{Id: "ev-1", TenantId: "tn_1", Type: "post.published"}}
		dl2, _ := proto.Marshal(&heraldv1.DeadLetter{Job: job2, Reason: "endpoint disabled (endpoint answered 410 Gone)", DeadAtUnixMs: now.UnixMilli(), Skipped: true})
		if _, err := js.Publish(ctx, bus.DLQSubject("tn_1", "ep_off"), dl2); err != nil {
			t.Fatal(err)
		}
		r := history.NewReader(idx, js)
		var ev history.Event
		testenv.Eventually(t, 10*time.Second, func() bool {
			var err error
			ev, err = r.Event(ctx, "tn_1", "ev-1")
			return err == nil && len(ev.Attempts) == 4 && len(ev.DeadLetters) == 2 && !ev.AcceptedAt.IsZero()
		}, "event not projected")
		if string(ev.Data) != `{"n":1}` || ev.Type != "post.published" {
			t.Fatalf("event %s %q", ev.Type, ev.Data)
		}
		old := time.Now().Add(-time.Hour)
		eps := []store.Endpoint{
			{ID: "ep_ok", Enabled: true, Events: []string{"*"}, CreatedAt: old},
			{ID: "ep_retry", Enabled: true, Events: []string{"post.*"}, CreatedAt: old},
			{ID: "ep_dead", Enabled: true, Events: []string{"*"}, CreatedAt: old},
			{ID: "ep_pending", Enabled: true, Events: []string{"post.published"}, CreatedAt: old},
			{ID: "ep_other", Enabled: true, Events: []string{"member.*"}, CreatedAt: old},
			{ID: "ep_new", Enabled: true, Events: []string{"*"}, CreatedAt: time.Now().Add(time.Hour)},
		}
		got := map[string]history.Delivery{}
		for _, d := range history.Deliveries(ev, eps) {
			got[d.EndpointID] = d
		}
		for ep, want := range map[string]string{"ep_ok": "delivered", "ep_retry": "retrying", "ep_dead": "dead", "ep_off": "skipped", "ep_pending": "pending"} {
			if got[ep].State != want {
				t.Errorf("%s: state %q, want %q", ep, got[ep].State, want)
			}
		}
		if len(got) != 5 {
			t.Errorf("deliveries %v, want 5 endpoints (not ep_other, not ep_new)", got)
		}
		if got["ep_retry"].NextAttemptAt == nil || got["ep_dead"].Reason != "gave up after 1 attempts" || len(got["ep_ok"].Attempts) != 2 ||
			got["ep_off"].Reason != "endpoint disabled (endpoint answered 410 Gone)" {
			t.Errorf("details: %+v", got)
		}
		if _, err := r.Event(ctx, "tn_2", "ev-1"); err != history.ErrNotFound {
			t.Fatalf("another tenant's event: %v", err)
		}
		if _, err := r.Event(ctx, "tn_1", "nope"); err != history.ErrNotFound {
			t.Fatalf("unknown event: %v", err)
		}
	})
}

// A Redis that is flushed (or restarted empty) loses no history: the
// projector notices the missing marker and replays the streams.
func TestIndexRebuiltAfterRedisFlush(t *testing.T) {
	js := jetStream(t)
	proc := testenv.RedisProcess(t)
	rdb := redisClient(t, proc.URL())
	idx := history.NewRedis(rdb, "h:", time.Hour)
	run(t, js, idx)
	ctx := ctxFor(t)
	now := time.Now()
	for i := range 20 {
		publishAttempt(t, js, attempt("tn_1", "ep_1", fmt.Sprintf("e%d", i), 1, now.Add(time.Duration(i)*time.Millisecond), 200))
	}
	r := history.NewReader(idx, js)
	count := func() int {
		p, err := r.Attempts(ctx, "tn_1", "ep_1", history.Query{Limit: 100})
		if err != nil {
			return -1
		}
		return len(p.Attempts)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return count() == 20 }, "attempts not projected")
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return count() == 20 }, "index not rebuilt after a flush")

	// Redis restarted empty while attempts keep coming: the same.
	proc.Kill()
	publishAttempt(t, js, attempt("tn_1", "ep_1", "during", 1, now.Add(time.Second), 200))
	proc.Start()
	testenv.Eventually(t, 20*time.Second, func() bool { return count() == 21 }, "index not rebuilt after a restart")
}

// TestDeliveriesWithoutRecord: what an endpoint with no attempt and no dead
// letter shows depends on whether its current configuration is the one the
// event was routed with, and on its state now. Nothing is pending that
// will not be attempted.
func TestDeliveriesWithoutRecord(t *testing.T) {
	accepted := time.Now().Add(-time.Minute)
	before, after := accepted.Add(-time.Hour), accepted.Add(time.Second)
	ev := history.Event{ID: "ev-1", Type: "post.published", AcceptedAt: accepted, DeadLetters: []history.DeadLetter{
		{EndpointID: "ep_skipped", EventID: "ev-1", Reason: "endpoint disabled", At: after, Skipped: true},
		{EndpointID: "ep_dead", EventID: "ev-1", Reason: "gave up after 5 attempts", At: after},
	}}
	ep := func(id, status string, created, updated time.Time, events ...string) store.Endpoint {
		e := store.Endpoint{ID: id, Events: events, CreatedAt: created, UpdatedAt: updated}
		e.SetStatus(status)
		return e
	}
	eps := []store.Endpoint{
		ep("ep_pending", store.StatusActive, before, before, "post.*"),
		ep("ep_changed", store.StatusActive, before, after, "post.*"),         // filter may have changed: left out
		ep("ep_paused", store.StatusPaused, before, after, "*"),               // paused after the event: held
		ep("ep_paused_before", store.StatusPaused, before, before, "*"),       // paused before it: held
		ep("ep_disabled", store.StatusDisabled, before, before, "*"),          // skipped, once recorded
		ep("ep_skipped", store.StatusDisabled, before, after, "*"),            // recorded: skipped
		ep("ep_dead", store.StatusActive, before, before, "*"),                // recorded: dead
		ep("ep_paused_other", store.StatusPaused, before, before, "member.*"), // does not match
		ep("ep_new", store.StatusActive, after, after, "*"),                   // created after the event
	}
	got := map[string]history.Delivery{}
	for _, d := range history.Deliveries(ev, eps) {
		got[d.EndpointID] = d
	}
	want := map[string]string{"ep_pending": "pending", "ep_paused": "held", "ep_paused_before": "held", "ep_skipped": "skipped", "ep_dead": "dead"}
	if len(got) != len(want) {
		t.Errorf("deliveries for %d endpoints, want %d: %v", len(got), len(want), got)
	}
	for id, state := range want {
		if got[id].State != state {
			t.Errorf("%s: state %q, want %q", id, got[id].State, state)
		}
	}
	if got["ep_skipped"].Reason != "endpoint disabled" || got["ep_dead"].Reason != "gave up after 5 attempts" {
		t.Errorf("reasons: skipped %q, dead %q", got["ep_skipped"].Reason, got["ep_dead"].Reason)
	}
	// A skipped delivery recovered later: its new attempt decides.
	ev.Attempts = []history.Attempt{{EndpointID: "ep_skipped", EventID: "ev-1", Number: 1, At: after.Add(time.Second), State: history.StateDelivered}}
	for _, d := range history.Deliveries(ev, eps) {
		if d.EndpointID == "ep_skipped" && d.State != history.StateDelivered {
			t.Errorf("recovered skipped delivery: state %q, want delivered", d.State)
		}
	}
}
