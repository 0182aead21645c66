package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/store"
)

// streamKeeper puts back Herald's streams and its configuration bucket when
// they go missing while the process runs (deleted by hand, or a NATS server
// back with an empty store). Every process creates them at start; without
// this, a stream deleted later stayed missing until a restart, ingest
// answered 503 to every event and /readyz still said ready. It only creates
// what is missing: a stream an operator reconfigured is left as it is.
type streamKeeper struct {
	js       jetstream.JetStream
	cfg      bus.Config
	extra    []string // more streams to watch: the payload bucket's
	every    time.Duration
	log      zerolog.Logger
	mu       sync.Mutex
	problem  error // what the last check could not put back
	recreate func(ctx context.Context) error
}

// newStreamKeeper watches cfg's streams, the configuration bucket and the
// extra streams named, and calls recreate when any is missing.
func newStreamKeeper(js jetstream.JetStream, cfg bus.Config, extra []string, recreate func(context.Context) error, log zerolog.Logger) *streamKeeper {
	return &streamKeeper{js: js, cfg: cfg, extra: extra, every: 3 * time.Second, log: log, recreate: recreate}
}

// run checks every few seconds until ctx ends.
func (k *streamKeeper) run(ctx context.Context) {
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.check(ctx)
	}
}

// check looks for missing streams and the bucket, and recreates them. A
// check that cannot reach NATS finds nothing missing: the nats check of
// /readyz reports that.
func (k *streamKeeper) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var missing []string
	names := k.extra
	for _, sc := range k.cfg.Streams() {
		names = append(names, sc.Name)
	}
	for _, name := range names {
		if _, err := k.js.Stream(cctx, name); errors.Is(err, jetstream.ErrStreamNotFound) {
			missing = append(missing, name)
		}
	}
	if _, err := k.js.KeyValue(cctx, store.Bucket); errors.Is(err, jetstream.ErrBucketNotFound) {
		missing = append(missing, "KV "+store.Bucket)
	}
	var problem error
	if len(missing) > 0 {
		k.log.Warn().Strs("missing", missing).Msg("streams missing; recreating them")
		if err := k.recreate(cctx); err != nil {
			problem = fmt.Errorf("missing %s: %w", strings.Join(missing, ", "), err)
			k.log.Error().Err(err).Strs("missing", missing).Msg("missing streams not recreated; retrying")
		} else {
			k.log.Info().Strs("recreated", missing).Msg("missing streams recreated")
		}
	}
	k.mu.Lock()
	k.problem = problem
	k.mu.Unlock()
}

// ready is the "streams" readiness check.
func (k *streamKeeper) ready(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.problem
}
