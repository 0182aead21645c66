package router

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/ops"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"google.golang.org/protobuf/proto"
)

// Endpoints of one tenant with every kind of filter, for the operational
// event tests.
var opsEndpoints = staticEndpoints{
	{ID: "ep_all", TenantID: "tn_1", Enabled: true, Events: []string{"*"}},
	{ID: "ep_prefix", TenantID: "tn_1", Enabled: true, Events: []string{"endpoint.*", "message.*"}},
	{ID: "ep_exhausted", TenantID: "tn_1", Enabled: true, Events: []string{"message.attempt.exhausted"}},
	{ID: "ep_disabled", TenantID: "tn_1", Enabled: true, Events: []string{"*", "endpoint.disabled"}},
	{ID: "ep_off", TenantID: "tn_1", Enabled: false, Events: []string{"endpoint.recovered"}},
}

// Operational types reach only endpoints naming them; wildcards still
// match every other type, including producers' types that share a prefix.
func TestMatchesOperationalOnlyExplicitly(t *testing.T) {
	want := map[string][]string{
		ops.EndpointDisabled:         {"ep_disabled"},
		ops.EndpointRecovered:        {"ep_off"}, // disabled: routed, then recorded as skipped
		ops.MessageAttemptsExhausted: {"ep_exhausted"},
		"endpoint.created":           {"ep_all", "ep_prefix", "ep_disabled"},
		"message.attempt.failed":     {"ep_all", "ep_prefix", "ep_disabled"},
	}
	for typ, w := range want {
		var got []string
		for i := range opsEndpoints {
			if Matches(&opsEndpoints[i], &heraldv1.Event{Type: typ}) {
				got = append(got, opsEndpoints[i].ID)
			}
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s reaches %v, want %v", typ, got, w)
		}
	}
	// An event naming its endpoint goes there, whatever its type.
	if !Matches(&opsEndpoints[0], &heraldv1.Event{Type: ops.EndpointDisabled, EndpointId: "ep_all"}) {
		t.Error("an operational event naming ep_all does not reach it")
	}
}

// Through a running router and real NATS: Herald's operational events, as
// the sender emits them, become jobs only for endpoints naming their type.
func TestRouterRoutesOperationalEventsOnlyToExplicitSubscribers(t *testing.T) {
	_, js := connect(t, testenv.NATS(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	pub := ops.New(js)
	for _, typ := range []string{ops.EndpointDisabled, ops.EndpointRecovered, ops.MessageAttemptsExhausted} {
		if err := pub.Emit(ctx, "tn_1", typ, "k", map[string]string{"endpoint_id": "ep_all"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ingest.New(js).Publish(ctx, "tn_1", event.Input{ID: "e1", Type: "endpoint.created", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	r := New(js, opsEndpoints, WithLogger(testenv.Logger(t)))
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	testenv.Eventually(t, 10*time.Second, func() bool {
		c, err := js.Consumer(ctx, bus.StreamEvents, bus.ConsumerRouter)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream == 4 && info.NumAckPending == 0
	}, "the router did not route the four events")

	got := map[string][]string{}                    // event type -> endpoints with a job
	st, err := js.Stream(ctx, bus.StreamDeliveries) // a work queue: read by sequence
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= st.CachedInfo().State.LastSeq; seq++ {
		msg, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var job heraldv1.DeliveryJob
		if err := proto.Unmarshal(msg.Data, &job); err != nil {
			t.Fatal(err)
		}
		got[job.Event.Type] = append(got[job.Event.Type], job.EndpointId)
	}
	want := map[string][]string{
		ops.EndpointDisabled:         {"ep_disabled"},
		ops.EndpointRecovered:        {"ep_off"}, // disabled: the sender records it as skipped
		ops.MessageAttemptsExhausted: {"ep_exhausted"},
		"endpoint.created":           {"ep_all", "ep_prefix", "ep_disabled"},
	}
	for typ := range got {
		slices.Sort(got[typ])
	}
	for typ := range want {
		slices.Sort(want[typ])
	}
	if !maps.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Fatalf("jobs by event type %v, want %v", got, want)
	}
}
