package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

func setup(t *testing.T) (jetstream.JetStream, *payload.Store, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	js := testenv.JetStream(t)
	ps, err := payload.Open(ctx, js, payload.Config{Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return js, ps, ctx
}

func objects(t *testing.T, ctx context.Context, js jetstream.JetStream) int {
	t.Helper()
	obs, err := js.ObjectStore(ctx, bus.PayloadBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}

func large(n int) []byte {
	return []byte(`{"text":"` + strings.Repeat("lorem ipsum ", n/12) + `"}`)
}

func lastEvent(t *testing.T, ctx context.Context, js jetstream.JetStream) *heraldv1.Event {
	t.Helper()
	st, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, bus.EventsPrefix+">")
	if err != nil {
		t.Fatal(err)
	}
	ev := &heraldv1.Event{}
	if err := proto.Unmarshal(m.Data, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestLargeDataGoesToThePayloadStore(t *testing.T) {
	js, ps, ctx := setup(t)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	pub := ingest.New(js, ingest.WithPayloads(ps))

	// Small: inline, as before.
	if _, err := pub.Publish(ctx, "tn_1", event.Input{ID: "small", Type: "a.b", Data: []byte(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	if ev := lastEvent(t, ctx, js); ev.PayloadRef != nil || string(ev.Data) != `{"x":1}` {
		t.Fatalf("small event %v: want its data inline", ev)
	}

	// Large: by reference.
	data := large(ps.InlineBytes() + 1)
	if _, err := pub.Publish(ctx, "tn_1", event.Input{ID: "big", Type: "a.b", Data: data}); err != nil {
		t.Fatal(err)
	}
	ev := lastEvent(t, ctx, js)
	if ev.PayloadRef == nil || len(ev.Data) != 0 || ev.PayloadRef.Size != int64(len(data)) {
		t.Fatalf("large event %v: want a payload_ref and no inline data", ev)
	}
	got, err := ps.Get(ctx, ev.PayloadRef)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored body: %v", err)
	}

	// The same id again: a duplicate, and its body is not kept.
	res, err := pub.Publish(ctx, "tn_1", event.Input{ID: "big", Type: "a.b", Data: data})
	if err != nil || !res.Duplicate {
		t.Fatalf("second publish: %+v %v, want a duplicate", res, err)
	}
	if n := objects(t, ctx, js); n != 1 {
		t.Fatalf("%d objects after a duplicate, want 1", n)
	}
}

// TestFailureStoresNothing: the API answers 503 when the body or the event
// cannot be stored, and leaves nothing behind.
func TestFailureStoresNothing(t *testing.T) {
	js, ps, ctx := setup(t)
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tenant, key, err := st.CreateTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(st, ingest.New(js, ingest.WithPayloads(ps))))
	t.Cleanup(srv.Close)
	post := func(data []byte) int {
		t.Helper()
		body := append(append([]byte(`{"type":"a.b","data":`), data...), '}')
		req, _ := http.NewRequest("POST", srv.URL+"/v1/events", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// No EVENTS stream: the body is stored, the event is not, and the body
	// is deleted again.
	if status := post(large(200 << 10)); status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", status)
	}
	if n := objects(t, ctx, js); n != 0 {
		t.Fatalf("%d objects left after the event was not stored", n)
	}

	// No bucket: nothing is stored at all.
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteObjectStore(ctx, bus.PayloadBucket); err != nil {
		t.Fatal(err)
	}
	if status := post(large(200 << 10)); status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", status)
	}
	s, _ := js.Stream(ctx, bus.StreamEvents)
	if info, _ := s.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("EVENTS holds %d messages for tenant %s", info.State.Msgs, tenant.ID)
	}
	// Small events never touch the bucket.
	if status := post([]byte(`{"ok":true}`)); status != http.StatusAccepted {
		t.Fatalf("small event: %d", status)
	}
}
