package service

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/store"
)

// TestStreamKeeperRecreatesMissing: streams, the config bucket and the
// payload bucket deleted
// while Herald runs are put back, and /readyz's "streams" check is clear.
func TestStreamKeeperRecreatesMissing(t *testing.T) {
	js := testenv.ConnectJetStream(t, testenv.NATSServer(t).URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := bus.Config{}
	payloads, err := payload.Open(ctx, js, payload.Config{})
	if err != nil {
		t.Fatal(err)
	}
	recreate := func(ctx context.Context) error {
		if err := bus.EnsureStreams(ctx, js, cfg); err != nil {
			return err
		}
		if err := payloads.Ensure(ctx); err != nil {
			return err
		}
		_, err := store.Open(ctx, js)
		return err
	}
	if err := recreate(ctx); err != nil {
		t.Fatal(err)
	}
	k := newStreamKeeper(js, cfg, payload.Streams(), recreate, zerolog.Nop())
	// The payload bucket alone.
	if err := js.DeleteObjectStore(ctx, bus.PayloadBucket); err != nil {
		t.Fatal(err)
	}
	k.check(ctx)
	if _, err := js.ObjectStore(ctx, bus.PayloadBucket); err != nil {
		t.Fatalf("payload bucket not recreated: %v", err)
	}
	// Then everything.
	for _, name := range []string{bus.StreamEvents, bus.StreamDeliveries, bus.StreamHeld, bus.StreamPayloadRefs} {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := js.DeleteKeyValue(ctx, store.Bucket); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteObjectStore(ctx, bus.PayloadBucket); err != nil {
		t.Fatal(err)
	}
	k.check(ctx)
	for _, name := range []string{bus.StreamEvents, bus.StreamDeliveries, bus.StreamHeld, "KV_" + store.Bucket, "OBJ_" + bus.PayloadBucket, bus.StreamPayloadRefs} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s not recreated: %v", name, err)
		}
	}
	if err := k.ready(ctx); err != nil {
		t.Errorf("streams check after recreating: %v", err)
	}
	// The Store opened before the deletion works with the recreated bucket:
	// large events are accepted and read back without a restart.
	body := bytes.Repeat([]byte("x"), 2<<20)
	ref, err := payloads.Put(ctx, "tn_1", body)
	if err != nil {
		t.Fatalf("store a body after the bucket was recreated: %v", err)
	}
	got, err := payloads.Get(ctx, ref)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read the body back: %d bytes, %v", len(got), err)
	}
	if err := payloads.Hold(ctx, ref, 1); err != nil {
		t.Fatalf("count its jobs after the counter stream was recreated: %v", err)
	}
}
