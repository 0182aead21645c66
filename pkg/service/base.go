package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/health"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/hold"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/listen"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/trace"
	"github.com/heraldhq/herald/pkg/version"
)

// base is what every role of a process shares: the NATS link and
// connections, the streams, the stores, Redis, the endpoint cache, the HTTP
// client for deliveries. openBase builds it once; each role's constructor
// (roles.go) takes what it needs from it.
type base struct {
	cfg  Config
	log  zerolog.Logger
	info Info

	link     *natsLink
	nc       *nats.Conn
	js       jetstream.JetStream
	sealer   *seal.Sealer
	st       *store.Store
	payloads *payload.Store
	rdb      *redis.Client // nil: no Redis (an all-in-one for development)
	cache    *cache.Cache
	held     *hold.Store
	hidx     history.Index // nil: this process keeps no attempt history
	limits   *limit.Limiter
	egress   *egress.Policy
	client   *deliver.Client
	keeper   *streamKeeper
	tracer   *trace.Tracer // nil: tracing off

	closers []func() // run in reverse by close
}

// openBase connects to NATS (embedded or NATS_URL) and Redis, sets up the
// streams and stores, and builds what the roles share. It retries what may
// come up later (a NATS cluster electing its leaders) until ctx ends.
func openBase(ctx context.Context, cfg Config, log zerolog.Logger) (_ *base, err error) {
	b := &base{cfg: cfg, log: log, info: Info{HTTPAddr: cfg.HTTPAddr}}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.sealer, err = secretSealer(cfg, log); err != nil { // secrets at rest (secrets.go)
		return nil, err
	}
	tracer, flush, err := openTracer(ctx, cfg) // OTEL_* (tracing.go)
	if err != nil {
		return nil, err
	}
	b.tracer = tracer
	b.closers = append(b.closers, flush)
	if err := b.openNATS(ctx); err != nil {
		return nil, err
	}
	if err := b.openStores(ctx); err != nil {
		return nil, err
	}
	b.rdb = connectRedis(ctx, cfg, log)
	if b.rdb != nil {
		b.closers = append(b.closers, func() { _ = b.rdb.Close() })
		b.info.Redis = true
	}
	b.openCache()
	b.limits = endpointLimits(cfg, b.rdb, log)
	// The attempt history: indexes in Redis, or in process for an
	// all-in-one without Redis (rebuilt from the streams at every start).
	switch {
	case b.rdb != nil:
		b.hidx = history.NewRedis(b.rdb, cfg.RedisPrefix, cfg.Streams.AttemptsMaxAge)
	case cfg.Roles.API && cfg.Roles.Router:
		b.hidx = history.NewMemory(cfg.Streams.AttemptsMaxAge)
	}
	// One HTTP client for deliveries and the API's test sends, so that a
	// test that passes means deliveries pass. The egress policy guards
	// both: no delivery, test or real, reaches an internal address unless
	// the operator allows it.
	pol, dopts, err := egressPolicy(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("HERALD_EGRESS_PROXY: %w", err)
	}
	b.egress = pol
	b.info.EgressAllowPrivate = cfg.EgressAllowPrivate
	// listen:// endpoints (herald listen) are reached over NATS, through
	// the API process that holds the developer's CLI stream.
	dopts = append(dopts, deliver.WithUserAgent(version.UserAgent()), deliver.WithProtocol(store.ListenScheme, listen.NewTransport(b.nc)))
	b.client = deliver.New(dopts...)
	b.keeper = newStreamKeeper(b.js, cfg.Streams, payload.Streams(), b.ensureStores, log.With().Str("component", "streams").Logger())
	return b, nil
}

// openNATS opens the NATS link (natsconn.go) and the process's connection.
func (b *base) openNATS(ctx context.Context) error {
	link, err := openNATS(b.cfg, b.log)
	if err != nil {
		return err
	}
	b.link = link
	b.closers = append(b.closers, link.close)
	b.info.NATSURL = link.clientURL()
	if b.cfg.Embedded {
		b.info.NATSAuthFile = NATSAuthFile(b.cfg.DataDir)
	}
	if b.nc, err = link.connect("herald"); err != nil {
		return err
	}
	b.closers = append(b.closers, b.nc.Close)
	// An async publish whose ack never comes (the stream was deleted, a
	// server restarted) must not stay pending forever: each would hold one
	// of the 8192 slots for good, and a graceful stop waits for them all.
	b.js, err = jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	collectStreams(b.js)
	return nil
}

// openStores sets up the streams, the configuration store and the store of
// large event bodies.
func (b *base) openStores(ctx context.Context) error {
	cfg, log := b.cfg, b.log
	if err := retryUntil(ctx, log, "set up streams", func(ctx context.Context) error {
		return bus.EnsureStreams(ctx, b.js, cfg.Streams)
	}); err != nil {
		return err
	}
	if err := retryUntil(ctx, log, "open config store", func(ctx context.Context) (err error) {
		b.st, err = store.Open(ctx, b.js, store.WithReplicas(cfg.Streams.Replicas), store.WithSealer(b.sealer))
		return err
	}); err != nil {
		return err
	}
	// Event bodies above the inline threshold: object store bucket and the
	// counts of jobs that need them. Their chunks travel on a connection of
	// their own, so that a burst of large events never queues ahead of
	// small events, jobs and acks.
	bnc, err := b.link.connect("herald-payloads")
	if err != nil {
		return fmt.Errorf("connect nats for payloads: %w", err)
	}
	b.closers = append(b.closers, bnc.Close)
	bulk, err := jetstream.New(bnc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return retryUntil(ctx, log, "open payload store", func(ctx context.Context) (err error) {
		b.payloads, err = payload.Open(ctx, b.js, payload.Config{
			Bulk:     bulk,
			Replicas: cfg.Streams.Replicas, TTL: cfg.Streams.EventsMaxAge, DuplicateWindow: cfg.Streams.DuplicateWindow,
			InlineBytes: cfg.InlinePayloadBytes, MaxBytes: int(cfg.MaxEventBytes), CacheBytes: cfg.PayloadCacheBytes,
			Logger: log.With().Str("component", "payload").Logger(),
		})
		return err
	})
}

// ensureStores puts back what openStores set up; the stream keeper calls
// it when something went missing.
func (b *base) ensureStores(ctx context.Context) error {
	if err := bus.EnsureStreams(ctx, b.js, b.cfg.Streams); err != nil {
		return err
	}
	if err := b.payloads.Ensure(ctx); err != nil {
		return err
	}
	_, err := store.Open(ctx, b.js, store.WithReplicas(b.cfg.Streams.Replicas), store.WithSealer(b.sealer))
	return err
}

// openCache builds the endpoint cache and the store of paused endpoints'
// jobs, which the cache tells of every change.
func (b *base) openCache() {
	copts := []cache.Option{cache.WithLogger(b.component("cache")), cache.WithJetStream(b.js), cache.WithSealer(b.sealer)}
	if b.rdb != nil {
		copts = append(copts, cache.WithRedis(b.rdb, b.cfg.RedisPrefix))
	}
	b.cache = cache.New(b.st, b.st.KV(), copts...)
	// Deliveries of paused endpoints wait on HELD: senders hold them and
	// release them on resume (at once: the cache tells of the change), the
	// API shows the backlog.
	b.held = hold.New(b.js, hold.WithEndpoints(b.cache), hold.WithPayloads(b.payloads), hold.WithLogger(b.component("hold")))
	b.cache.OnChange(b.held.Changed)
}

// component is the process logger for one component.
func (b *base) component(name string) zerolog.Logger {
	return b.log.With().Str("component", name).Logger()
}

// checks are the readiness checks every process has: what every role
// needs to work (NATS, JetStream, the endpoint change watch, the streams).
// Redis is optional: without it the endpoint cache reads the store, limits
// and breakers hold per process and intake goes on, so its failure shows as
// degraded in /readyz and leaves the process ready. A Redis blip must not
// take every ingest pod out of its Service.
func (b *base) checks() []health.Check {
	checks := []health.Check{
		{Name: "nats", Fn: func(context.Context) error {
			if !b.nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		}},
		{Name: "jetstream", Fn: func(ctx context.Context) error {
			_, err := b.js.AccountInfo(ctx)
			return err
		}},
		{Name: "cache", Fn: func(context.Context) error {
			if !b.cache.Ready() {
				return errors.New("endpoint change watch not running")
			}
			return nil
		}},
	}
	if b.rdb != nil {
		checks = append(checks, health.Check{Name: "redis", Optional: true, Fn: func(ctx context.Context) error {
			return b.rdb.Ping(ctx).Err()
		}})
	}
	return append(checks, health.Check{Name: "streams", Fn: b.keeper.ready})
}

// close closes what openBase opened, last first.
func (b *base) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}
