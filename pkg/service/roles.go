package service

import (
	"context"
	"net/http"
	"time"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/health"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/ingest"
	"github.com/heraldhq/herald/pkg/listen"
	"github.com/heraldhq/herald/pkg/ops"
	"github.com/heraldhq/herald/pkg/portal"
	"github.com/heraldhq/herald/pkg/router"
	"github.com/heraldhq/herald/pkg/sender"
)

// A part is one thing a process runs beside the others: a role's worker
// (router, sender, replays) or a background job (the endpoint change
// watch, the stream keeper). Each role has one constructor below that
// returns its parts; Run starts every part and stops them together, so
// adding a role or a background job is a change here, not in Run.
type part struct {
	name string
	// run works until ctx ends; an error says it stopped while failing.
	run func(context.Context) error
	// ready is closed once the part works; nil: at once.
	ready <-chan struct{}
}

// shared are the parts every process runs: the endpoint change watch and
// the stream keeper. The keeper comes last among all parts: roles register
// with it what they do when DELIVERIES is lost, before it starts.
func (b *base) shared() []part {
	// Ready once the change watch runs: /readyz checks it, so a process
	// that said "ready" before would answer 503 for a moment.
	return []part{{name: "cache", run: b.cache.Run, ready: b.cache.Started()}}
}

// keeperPart runs the stream keeper.
func (b *base) keeperPart() part {
	return part{name: "streams", run: func(ctx context.Context) error { b.keeper.run(ctx); return nil }}
}

// routerRole matches events to endpoints and publishes jobs. With an
// attempt history, the router role also projects it. If DELIVERIES is
// lost, the router routes again what it may have held.
func (b *base) routerRole() []part {
	decoded := router.NewDecoded() // each producer's JSON event decoded once for router and history
	r := router.New(b.js, b.cache, router.WithLogger(b.component("router")), router.WithWorkers(b.cfg.RouterWorkers),
		router.WithAckWait(b.cfg.AckWait), router.WithPayloads(b.payloads), router.WithTracer(b.tracer), router.WithDecoded(decoded))
	b.keeper.onDeliveriesLost(func(ctx context.Context, since time.Time) {
		if _, err := r.Reroute(ctx, since); err != nil {
			b.log.Error().Err(err).Msg("events not routed again after DELIVERIES was lost")
		}
	})
	parts := []part{{name: "router", run: r.Run, ready: r.Ready()}}
	if b.hidx != nil {
		p := history.NewProjector(b.js, b.hidx, history.WithLogger(b.component("history")), history.WithDecoded(decoded))
		parts = append(parts, part{name: "history", run: p.Run, ready: p.Ready()})
	}
	return parts
}

// senderRole signs and sends jobs, and releases the jobs of endpoints
// resumed after a pause. Its readiness check is that it can fetch jobs.
func (b *base) senderRole() ([]part, health.Check) {
	cfg := b.cfg
	lim := b.limits
	s := sender.New(b.js, b.cache,
		sender.WithLogger(b.component("sender")),
		sender.WithWorkers(cfg.SenderWorkers),
		sender.WithSchedule(cfg.Schedule),
		sender.WithAckWait(cfg.AckWait),
		sender.WithDisabler(b.st),
		sender.WithScheduleThreshold(cfg.ScheduleThreshold),
		sender.WithMaxAckPending(cfg.SenderMaxAckPending),
		sender.WithOps(ops.New(b.js)),
		sender.WithLimiter(lim),
		sender.WithEndpointConcurrency(cfg.EndpointConcurrency),
		sender.WithHandoff(sender.Handoff{Wait: cfg.EndpointHandoffWait, EndpointJobs: cfg.EndpointHandoffJobs,
			Jobs: cfg.SenderHandoffJobs, Bytes: cfg.SenderHandoffBytes}),
		sender.WithRetryAfterMax(cfg.RetryAfterMax),
		sender.WithHealth(lim, cfg.DisableAfter),
		sender.WithClient(b.client),
		sender.WithPayloads(b.payloads),
		sender.WithHolder(b.held),
		sender.WithTracer(b.tracer),
	)
	return []part{
		{name: "sender", run: s.Run, ready: s.Ready()},
		{name: "hold", run: b.held.Run},
	}, health.Check{Name: "sender", Fn: func(context.Context) error { return s.Fetching() }}
}

// apiRole serves the HTTP API (intake and management) and runs replays of
// dead letters, resumed by any API process after a crash. It returns the
// handler for "/" and its parts.
func (b *base) apiRole(ctx context.Context) (http.Handler, []part, error) {
	cfg, log := b.cfg, b.log
	token, generated, err := adminToken(cfg)
	if err != nil {
		return nil, nil, err
	}
	b.info.AdminToken, b.info.AdminTokenGenerated = token, generated
	if generated {
		b.info.AdminTokenFile = adminTokenFile(cfg.DataDir)
	}
	if token == "" {
		log.Warn().Msg("HERALD_ADMIN_TOKEN is not set: tenant management routes answer 401")
	}
	aopts := []api.Option{
		api.WithEventRateLimit(eventRateLimit(cfg, b.rdb, log)),
		api.WithAdminToken(token),
		api.WithInvalidator(b.cache),
		api.WithMaxEventBytes(cfg.MaxEventBytes),
		api.WithMaxInflightEventBytes(cfg.MaxInflightEventBytes),
		api.WithLogger(b.component("api")),
		api.WithDeliverClient(b.client),
		api.WithURLCheck(b.egress.CheckURL),
		api.WithBacklogs(b.held),
		api.WithListener(listen.NewRelay(b.nc)),
		api.WithTracer(b.tracer),
	}
	aopts = append(aopts, testSendLimits(cfg, b.rdb, b.limits, log)...)
	if b.hidx != nil {
		aopts = append(aopts, api.WithHistory(history.NewReader(b.hidx, b.js, history.WithPayloads(b.payloads))))
	}
	// Dead letters: listing, replays, recover and resend.
	var dq *dlq.Service
	if err := retryUntil(ctx, log, "open replay store", func(ctx context.Context) (err error) {
		dopts := []dlq.Option{dlq.WithReplicas(cfg.Streams.Replicas), dlq.WithLogger(b.component("dlq")), dlq.WithPayloads(b.payloads)}
		if b.hidx != nil {
			dopts = append(dopts, dlq.WithEventFinder(eventFinder{history.NewReader(b.hidx, b.js), dlq.NewStreamFinder(b.js, 0)}))
		}
		dq, err = dlq.New(ctx, b.js, b.cache, dopts...)
		return err
	}); err != nil {
		return nil, nil, err
	}
	aopts = append(aopts, api.WithDLQ(dq))
	// The webhooks portal: sessions in the API's auth path, the page beside it.
	signer, err := portalSigner(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	var verifier portal.Verifier
	if signer != nil {
		aopts = append(aopts, api.WithSessions(signer), api.WithPublicURL(cfg.PublicURL))
		verifier = signer
		if cfg.Embedded {
			b.info.PortalLinks = walkthroughPortal(ctx, b.st, signer, log)
		}
	}
	a := api.New(b.st, ingest.New(b.js, ingest.WithPayloads(b.payloads), ingest.WithTracer(b.tracer)), aopts...)
	mux := http.NewServeMux()
	portal.New(verifier, portal.WithLogger(b.component("portal"))).Register(mux)
	mux.Handle("/", a)
	storeLog := b.component("store")
	return mux, []part{
		{name: "dlq", run: dq.Run},
		{name: "reseal", run: func(ctx context.Context) error { reseal(ctx, b.st, storeLog); return nil }},
		{name: "listen-sweep", run: listen.NewSweeper(b.nc, b.st, listen.WithLogger(b.component("listen"))).Run},
		{name: "endpoint-counts", run: func(ctx context.Context) error { countEndpoints(ctx, b.st, storeLog); return nil }},
	}, nil
}
