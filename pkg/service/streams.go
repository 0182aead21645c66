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

	// What a lost DELIVERIES held is found again from when its oldest job
	// was stored: jobs come back from there (see onLost). oldest is that
	// time at the last check, created the stream's creation time, so a
	// stream recreated by another process is noticed too.
	oldest, created time.Time
	onLost          []func(ctx context.Context, since time.Time)
}

// newStreamKeeper watches cfg's streams, the configuration bucket and the
// extra streams named, and calls recreate when any is missing.
func newStreamKeeper(js jetstream.JetStream, cfg bus.Config, extra []string, recreate func(context.Context) error, log zerolog.Logger) *streamKeeper {
	return &streamKeeper{js: js, cfg: cfg, extra: extra, every: 3 * time.Second, log: log, recreate: recreate}
}

// onDeliveriesLost registers fn to run when DELIVERIES was lost and is back
// (deleted, then recreated by this keeper or another process's): since is
// when the oldest job it held was stored, so everything that may have been
// in it was published after since. The router routes again from there.
func (k *streamKeeper) onDeliveriesLost(fn func(ctx context.Context, since time.Time)) {
	k.onLost = append(k.onLost, fn)
}

// run checks every few seconds until ctx ends.
func (k *streamKeeper) run(ctx context.Context) {
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		k.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
	lost := false
	for _, name := range names {
		st, err := k.js.Stream(cctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			missing = append(missing, name)
			lost = lost || name == bus.StreamDeliveries
		} else if err == nil && name == bus.StreamDeliveries {
			lost = k.sawDeliveries(st.CachedInfo()) || lost
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
	if lost && problem == nil && !k.oldest.IsZero() {
		since := k.oldest.Add(-time.Second)
		k.log.Warn().Time("since", since).Msg("DELIVERIES was lost; bringing back the jobs it may have held")
		for _, fn := range k.onLost {
			fn(ctx, since) // a stop interrupts it: see docs/operations.md
		}
		k.oldest, k.created = time.Time{}, time.Time{} // the next check starts over on the new stream
	}
}

// sawDeliveries notes when DELIVERIES' oldest job was stored, and reports
// whether the stream is not the one seen last time (recreated elsewhere).
func (k *streamKeeper) sawDeliveries(info *jetstream.StreamInfo) (replaced bool) {
	replaced = !k.created.IsZero() && !info.Created.Equal(k.created)
	if replaced {
		return true // keep oldest: it is the lost stream's
	}
	k.created = info.Created
	if info.State.Msgs > 0 {
		k.oldest = info.State.FirstTime
	} else {
		k.oldest = time.Now()
	}
	return false
}

// ready is the "streams" readiness check.
func (k *streamKeeper) ready(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.problem
}
