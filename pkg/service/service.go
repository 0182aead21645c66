// Package service wires Herald's packages into a running process. The
// binaries under services/ are thin mains over Run: one role each, or all of
// them with NATS embedded (the all-in-one).
package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/health"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/hold"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/ops"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/router"
	"github.com/heraldhq/herald/pkg/sender"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/version"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Info describes a started process, for the all-in-one's welcome text.
type Info struct {
	HTTPAddr   string
	NATSURL    string
	AdminToken string
	// AdminTokenGenerated is true when the token was generated and stored in
	// the data dir rather than given by HERALD_ADMIN_TOKEN; AdminTokenFile
	// is then where.
	AdminTokenGenerated bool
	AdminTokenFile      string
	// NATSAuthFile holds Herald's own credentials of the embedded NATS
	// server (EmbeddedNATSAuth); producers use an API key instead.
	NATSAuthFile string
	Redis        bool
	// EgressAllowPrivate is true when deliveries may go to loopback and
	// private addresses (HERALD_EGRESS_ALLOW_PRIVATE).
	EgressAllowPrivate bool
}

// NewLogger returns the process logger: zerolog JSON, one event per line,
// or a console format for people at a terminal.
func NewLogger(cfg Config, w io.Writer, role string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", role).Logger()
}

// Run starts the roles cfg names and serves until ctx ends, then stops
// gracefully: the HTTP server finishes its requests, routers and senders
// finish and ack what they hold, and async publishes are flushed. ready, if
// not nil, is called once everything serves.
func Run(ctx context.Context, cfg Config, log zerolog.Logger, ready func(Info)) error {
	defer startPprof(log)() // HERALD_PPROF_ADDR: opt-in profiling (pprof.go)
	info := Info{HTTPAddr: cfg.HTTPAddr}
	sealer, err := secretSealer(cfg, log) // secrets at rest (secrets.go)
	if err != nil {
		return err
	}

	// NATS: embedded, or a server at NATS_URL (natsconn.go).
	link, err := openNATS(cfg, log)
	if err != nil {
		return err
	}
	defer link.close()
	info.NATSURL = link.clientURL()
	if cfg.Embedded {
		info.NATSAuthFile = NATSAuthFile(cfg.DataDir)
	}
	nc, err := link.connect("herald")
	if err != nil {
		return err
	}
	defer nc.Close()

	// An async publish whose ack never comes (the stream was deleted, a
	// server restarted) must not stay pending forever: each would hold one
	// of the 8192 slots for good, and a graceful stop waits for them all.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	collectStreams(js)
	if err := retryUntil(ctx, log, "set up streams", func(ctx context.Context) error {
		return bus.EnsureStreams(ctx, js, cfg.Streams)
	}); err != nil {
		return err
	}
	var st *store.Store
	if err := retryUntil(ctx, log, "open config store", func(ctx context.Context) error {
		var err error
		st, err = store.Open(ctx, js, store.WithReplicas(cfg.Streams.Replicas), store.WithSealer(sealer))
		return err
	}); err != nil {
		return err
	}
	// Event bodies above the inline threshold: object store bucket and the
	// counts of jobs that need them.
	// Their chunks travel on a connection of their own, so that a burst of
	// large events never queues ahead of small events, jobs and acks.
	bnc, err := link.connect("herald-payloads")
	if err != nil {
		return fmt.Errorf("connect nats for payloads: %w", err)
	}
	defer bnc.Close()
	bulk, err := jetstream.New(bnc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var payloads *payload.Store
	if err := retryUntil(ctx, log, "open payload store", func(ctx context.Context) error {
		var err error
		payloads, err = payload.Open(ctx, js, payload.Config{
			Bulk:     bulk,
			Replicas: cfg.Streams.Replicas, TTL: cfg.Streams.EventsMaxAge, DuplicateWindow: cfg.Streams.DuplicateWindow,
			InlineBytes: cfg.InlinePayloadBytes, MaxBytes: int(cfg.MaxEventBytes), CacheBytes: cfg.PayloadCacheBytes,
			Logger: log.With().Str("component", "payload").Logger(),
		})
		return err
	}); err != nil {
		return err
	}

	rdb := connectRedis(ctx, cfg, log)
	if rdb != nil {
		defer rdb.Close()
		info.Redis = true
	}
	copts := []cache.Option{cache.WithLogger(log.With().Str("component", "cache").Logger()), cache.WithJetStream(js), cache.WithSealer(sealer)}
	if rdb != nil {
		copts = append(copts, cache.WithRedis(rdb, cfg.RedisPrefix))
	}
	c := cache.New(st, st.KV(), copts...)
	// Deliveries of paused endpoints wait on HELD: senders hold them and
	// release them on resume (at once: the cache tells of the change), the
	// API shows the backlog.
	held := hold.New(js, hold.WithEndpoints(c), hold.WithPayloads(payloads), hold.WithLogger(log.With().Str("component", "hold").Logger()))
	c.OnChange(held.Changed)

	// The attempt history: indexes in Redis, or in process for an
	// all-in-one without Redis (rebuilt from the streams at every start).
	var hidx history.Index
	switch {
	case rdb != nil:
		hidx = history.NewRedis(rdb, cfg.RedisPrefix, cfg.Streams.AttemptsMaxAge)
	case cfg.Roles.API && cfg.Roles.Router:
		hidx = history.NewMemory(cfg.Streams.AttemptsMaxAge)
	}
	// One HTTP client for deliveries and the API's test sends, so that a
	// test that passes means deliveries pass.
	// The egress policy guards both: no delivery, test or real, reaches an
	// internal address unless the operator allows it.
	pol, dopts, err := egressPolicy(cfg, log)
	if err != nil {
		return fmt.Errorf("HERALD_EGRESS_PROXY: %w", err)
	}
	info.EgressAllowPrivate = cfg.EgressAllowPrivate
	dc := deliver.New(append(dopts, deliver.WithUserAgent(version.UserAgent()))...)

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(runCtx) }()
	if err := link.serveProducerAuth(runCtx, &wg, st); err != nil {
		return err
	}

	checks := []health.Check{
		{Name: "nats", Fn: func(context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		}},
		{Name: "jetstream", Fn: func(ctx context.Context) error {
			_, err := js.AccountInfo(ctx)
			return err
		}},
		{Name: "cache", Fn: func(context.Context) error {
			if !c.Ready() {
				return errors.New("endpoint change watch not running")
			}
			return nil
		}},
	}
	if rdb != nil {
		checks = append(checks, health.Check{Name: "redis", Fn: func(ctx context.Context) error {
			return rdb.Ping(ctx).Err()
		}})
	}
	keeper := newStreamKeeper(js, cfg.Streams, payload.Streams(), func(ctx context.Context) error {
		if err := bus.EnsureStreams(ctx, js, cfg.Streams); err != nil {
			return err
		}
		if err := payloads.Ensure(ctx); err != nil {
			return err
		}
		_, err := store.Open(ctx, js, store.WithReplicas(cfg.Streams.Replicas), store.WithSealer(sealer))
		return err
	}, log.With().Str("component", "streams").Logger())
	checks = append(checks, health.Check{Name: "streams", Fn: keeper.ready})

	var readies []<-chan struct{}
	if cfg.Roles.Router {
		r := router.New(js, c, router.WithLogger(log.With().Str("component", "router").Logger()), router.WithWorkers(cfg.RouterWorkers), router.WithAckWait(cfg.AckWait), router.WithPayloads(payloads))
		keeper.onDeliveriesLost(func(ctx context.Context, since time.Time) {
			if _, err := r.Reroute(ctx, since); err != nil {
				log.Error().Err(err).Msg("events not routed again after DELIVERIES was lost")
			}
		})
		readies = append(readies, r.Ready())
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(runCtx) }()
		if hidx != nil {
			p := history.NewProjector(js, hidx, history.WithLogger(log.With().Str("component", "history").Logger()))
			readies = append(readies, p.Ready())
			wg.Add(1)
			go func() { defer wg.Done(); _ = p.Run(runCtx) }()
		}
	}
	wg.Add(1) // after the roles registered what they do when DELIVERIES is lost
	go func() { defer wg.Done(); keeper.run(runCtx) }()
	if cfg.Roles.Sender {
		var lrdb redis.UniversalClient
		if rdb != nil {
			lrdb = rdb
		}
		lim := limit.New(lrdb, cfg.RedisPrefix, limit.WithConcurrency(cfg.EndpointConcurrency),
			limit.WithBreaker(cfg.BreakerFailures, cfg.BreakerCoolDown, 10*time.Minute),
			limit.WithBreakerFailingFor(cfg.BreakerFailingFor),
			limit.WithLogger(log.With().Str("component", "limit").Logger()))
		s := sender.New(js, c,
			sender.WithLogger(log.With().Str("component", "sender").Logger()),
			sender.WithWorkers(cfg.SenderWorkers),
			sender.WithSchedule(cfg.Schedule),
			sender.WithAckWait(cfg.AckWait),
			sender.WithDisabler(st),
			sender.WithScheduleThreshold(cfg.ScheduleThreshold),
			sender.WithMaxAckPending(cfg.SenderMaxAckPending),
			sender.WithOps(ops.New(js)),
			sender.WithLimiter(lim),
			sender.WithEndpointConcurrency(cfg.EndpointConcurrency),
			sender.WithHandoff(sender.Handoff{Wait: cfg.EndpointHandoffWait, EndpointJobs: cfg.EndpointHandoffJobs,
				Jobs: cfg.SenderHandoffJobs, Bytes: cfg.SenderHandoffBytes}),
			sender.WithRetryAfterMax(cfg.RetryAfterMax),
			sender.WithHealth(lim, cfg.DisableAfter),
			sender.WithClient(dc),
			sender.WithPayloads(payloads),
			sender.WithHolder(held),
		)
		readies = append(readies, s.Ready())
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(runCtx) }()
		wg.Add(1)
		go func() { defer wg.Done(); _ = held.Run(runCtx) }()
	}

	mux := http.NewServeMux()
	health.Register(mux, checks...)
	if cfg.Roles.API {
		token, generated, err := adminToken(cfg)
		if err != nil {
			return err
		}
		info.AdminToken, info.AdminTokenGenerated = token, generated
		if generated {
			info.AdminTokenFile = adminTokenFile(cfg.DataDir)
		}
		if token == "" {
			log.Warn().Msg("HERALD_ADMIN_TOKEN is not set: tenant management routes answer 401")
		}
		wg.Add(1)
		go func() { defer wg.Done(); reseal(runCtx, st, log.With().Str("component", "store").Logger()) }()
		aopts := []api.Option{
			api.WithEventRateLimit(eventRateLimit(cfg, rdb, log)),
			api.WithAdminToken(token),
			api.WithInvalidator(c),
			api.WithMaxEventBytes(cfg.MaxEventBytes),
			api.WithMaxInflightEventBytes(cfg.MaxInflightEventBytes),
			api.WithLogger(log.With().Str("component", "api").Logger()),
			api.WithDeliverClient(dc),
			api.WithURLCheck(pol.CheckURL),
			api.WithBacklogs(held),
		}
		aopts = append(aopts, testSendLimits(cfg, rdb, log)...)
		if hidx != nil {
			aopts = append(aopts, api.WithHistory(history.NewReader(hidx, js)))
		}
		// Dead letters: listing, replays (run in API processes, resumed
		// by any of them after a crash), recover and resend.
		var dq *dlq.Service
		if err := retryUntil(ctx, log, "open replay store", func(ctx context.Context) error {
			var err error
			dopts := []dlq.Option{dlq.WithReplicas(cfg.Streams.Replicas), dlq.WithLogger(log.With().Str("component", "dlq").Logger()),
				dlq.WithPayloads(payloads)}
			if hidx != nil {
				dopts = append(dopts, dlq.WithEventFinder(eventFinder{history.NewReader(hidx, js), dlq.NewStreamFinder(js, 0)}))
			}
			dq, err = dlq.New(ctx, js, c, dopts...)
			return err
		}); err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = dq.Run(runCtx) }()
		aopts = append(aopts, api.WithDLQ(dq))
		a := api.New(st, ingest.New(js, ingest.WithPayloads(payloads)), aopts...)
		mux.Handle("/", a)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	info.HTTPAddr = ln.Addr().String()
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          nil,
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()

	for _, r := range readies {
		select {
		case <-r:
		case <-ctx.Done():
		}
	}
	log.Info().Str("http", info.HTTPAddr).Str("nats", redactURL(info.NATSURL)).Bool("redis", info.Redis).
		Bool("api", cfg.Roles.API).Bool("router", cfg.Roles.Router).Bool("sender", cfg.Roles.Sender).
		Str("version", version.Version).Msg("herald ready")
	if ready != nil {
		ready(info)
	}

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		log.Error().Err(err).Msg("http server stopped")
	}
	log.Info().Msg("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx) // intake stops first: nothing new is accepted
	stop()                        // routers and senders finish what they hold
	wg.Wait()
	select { // async publishes (attempt records) still in flight
	case <-js.PublishAsyncComplete():
	case <-shutdownCtx.Done():
	}
	_ = nc.Drain()
	log.Info().Msg("stopped")
	return nil
}

func natsOptions(log zerolog.Logger) []nats.Option {
	return []nats.Option{
		nats.Name("herald"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info().Str("url", redactURL(c.ConnectedUrl())).Msg("nats reconnected")
		}),
	}
}

// connectRedis returns a client, or nil when Redis is optional and does not
// answer: then the cache runs in process only, which is said once.
func connectRedis(ctx context.Context, cfg Config, log zerolog.Logger) *redis.Client {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		log.Error().Err(err).Msg("REDIS_URL is not a redis:// URL; running without the Redis cache")
		return nil
	}
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		if cfg.RedisOptional {
			log.Warn().Str("redis", redactURL(cfg.RedisURL)).Msg("no Redis answers; using an in-process endpoint cache (fine for one process)")
			_ = rdb.Close()
			return nil
		}
		log.Warn().Err(err).Str("redis", redactURL(cfg.RedisURL)).Msg("redis does not answer yet; reading endpoints from the store until it does")
	}
	return rdb
}

// adminToken returns the configured operator token, or for the all-in-one
// one generated once and kept in the data dir.
func adminToken(cfg Config) (token string, generated bool, err error) {
	if cfg.AdminToken != "" || !cfg.Embedded {
		return cfg.AdminToken, false, nil
	}
	path := adminTokenFile(cfg.DataDir)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), true, nil
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	token = "adm_" + base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("store admin token: %w", err)
	}
	return token, true, nil
}

// adminTokenFile is where the all-in-one keeps the token it generated:
// an absolute path, so the welcome text's commands work from anywhere.
func adminTokenFile(dataDir string) string {
	p := filepath.Join(dataDir, "admin-token")
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// retryUntil runs fn until it succeeds or ctx ends, so services may start
// before NATS does.
func retryUntil(ctx context.Context, log zerolog.Logger, what string, fn func(context.Context) error) error {
	delay := 200 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn().Err(err).Msg(what + " failed; retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}

// redactURL drops credentials from a URL before it is logged.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "***@" + rest[at+1:]
	}
	return scheme + "://" + rest
}
