package router

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// staticEndpoints is a fixed endpoint list: the router's data source, not a
// stand-in for NATS or Redis.
type staticEndpoints []store.Endpoint

func (s staticEndpoints) Endpoints(context.Context, string) ([]store.Endpoint, error) { return s, nil }
func (s staticEndpoints) Current(context.Context) error                               { return nil }

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

var eps = staticEndpoints{
	{ID: "ep_a", TenantID: "tn_1", Enabled: true, Events: []string{"post.*"}},
	{ID: "ep_b", TenantID: "tn_1", Enabled: true, Events: []string{"*"}},
	{ID: "ep_c", TenantID: "tn_1", Enabled: true, Events: []string{"member.added"}},
	{ID: "ep_d", TenantID: "tn_1", Enabled: false, Events: []string{"*"}},
}

// A router that dies after storing an event's jobs but before acking the
// event leaves the event to be routed again; the jobs it publishes again
// carry the same ids and are deduplicated, so no job is stored twice.
func TestRouterCrashBetweenJobsAndAckMakesNoDuplicateJobs(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, js := connect(t, url)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ingest.New(js).Publish(ctx, "tn_1", event.Input{ID: "e1", Type: "post.published", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	// Router A stores the jobs, then "crashes": it never acks, and its
	// connection goes away.
	ncA, jsA := connect(t, url)
	stored := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	a := New(jsA, eps, WithAckWait(time.Second), WithLogger(testenv.Logger(t)))
	a.beforeAck = func(*heraldv1.Event) {
		once.Do(func() { close(stored) })
		<-release
	}
	ctxA, stopA := context.WithCancel(ctx)
	doneA := make(chan struct{})
	go func() { _ = a.Run(ctxA); close(doneA) }()
	select {
	case <-stored:
	case <-time.After(10 * time.Second):
		t.Fatal("router A did not store the jobs")
	}
	if got := streamMsgs(t, js, bus.StreamDeliveries); got != 3 {
		t.Fatalf("jobs stored by router A = %d, want 3 (ep_a, ep_b, and ep_d: disabled, recorded as skipped)", got)
	}
	ncA.Close()
	stopA()

	// Router B takes the event over once AckWait passes.
	_, jsB := connect(t, url)
	b := New(jsB, eps, WithAckWait(time.Second), WithLogger(testenv.Logger(t)))
	acked := make(chan struct{})
	b.beforeAck = func(*heraldv1.Event) { close(acked) }
	go func() { _ = b.Run(ctx) }()
	select {
	case <-acked:
	case <-time.After(15 * time.Second):
		t.Fatal("router B never routed the redelivered event")
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		c, err := js.Consumer(ctx, bus.StreamEvents, bus.ConsumerRouter)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, "router B did not ack the event")
	if got := streamMsgs(t, js, bus.StreamDeliveries); got != 3 {
		t.Fatalf("jobs after the redelivery = %d, want still 3", got)
	}
	close(release)
	<-doneA
}

func TestMatches(t *testing.T) {
	ev := &heraldv1.Event{Type: "post.published"}
	for _, c := range []struct {
		ep   store.Endpoint
		ev   *heraldv1.Event
		want bool
	}{
		{eps[0], ev, true},
		{eps[1], ev, true},
		{eps[2], ev, false},
		{eps[3], ev, true}, // disabled: routed, the sender records it as skipped
		{eps[2], &heraldv1.Event{Type: "post.published", EndpointId: "ep_c"}, true},  // named: filter ignored
		{eps[0], &heraldv1.Event{Type: "post.published", EndpointId: "ep_c"}, false}, // named another
		{eps[3], &heraldv1.Event{Type: "post.published", EndpointId: "ep_d"}, true},  // named and disabled: skipped later
	} {
		if got := Matches(&c.ep, c.ev); got != c.want {
			t.Errorf("Matches(%s, %+v) = %v, want %v", c.ep.ID, c.ev, got, c.want)
		}
	}
}
