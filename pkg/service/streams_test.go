package service

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/testenv"
)

// TestStreamKeeperRecreatesMissing: streams and the config bucket deleted
// while Herald runs are put back, and /readyz's "streams" check is clear.
func TestStreamKeeperRecreatesMissing(t *testing.T) {
	nc, err := nats.Connect(testenv.NATSServer(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := bus.Config{}
	recreate := func(ctx context.Context) error {
		if err := bus.EnsureStreams(ctx, js, cfg); err != nil {
			return err
		}
		_, err := store.Open(ctx, js)
		return err
	}
	if err := recreate(ctx); err != nil {
		t.Fatal(err)
	}
	k := newStreamKeeper(js, cfg, recreate, zerolog.Nop())
	for _, name := range []string{bus.StreamEvents, bus.StreamDeliveries} {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := js.DeleteKeyValue(ctx, store.Bucket); err != nil {
		t.Fatal(err)
	}
	k.check(ctx)
	for _, name := range []string{bus.StreamEvents, bus.StreamDeliveries, "KV_" + store.Bucket} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s not recreated: %v", name, err)
		}
	}
	if err := k.ready(ctx); err != nil {
		t.Errorf("streams check after recreating: %v", err)
	}
}
