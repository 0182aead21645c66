// Package sender delivers jobs: it pulls them from the shared DELIVERIES
// consumer, signs and sends each, and acks on 2xx. A failed attempt
// publishes the job again as a message schedule with its attempt count
// raised, so the count travels with the job; a job that used its attempts
// goes to the DLQ before it is acked. What becomes of a job is one state
// machine, in job.go.
package sender

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/attemptlog"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/trace"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
)

var (
	attempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_sender_attempts_total",
		Help: "HTTP attempts by outcome class (none = 2xx).",
	}, []string{"class"})
	outcomes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_sender_jobs_total",
		Help: "Jobs finished by result: delivered, dead_lettered, skipped (endpoint disabled), held (endpoint paused), dropped (endpoint deleted).",
	}, []string{"result"})
	latency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "herald_delivery_latency_seconds",
		Help:    "From event accepted to 2xx received.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
	})
	attemptLatency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "herald_attempt_duration_seconds",
		Help:    "One HTTP attempt, from sending the request until the status and the kept body were read; attempts that sent nothing are left out.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
	})
	inFlight = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_sender_in_flight",
		Help: "Jobs being worked on by this process.",
	})
	delayed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_sender_delayed_total",
		Help: "Jobs put back without an attempt, by reason: concurrency, rate, breaker, lookup (endpoint unreadable), paused (no holder).",
	}, []string{"reason"})
	handoffs = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_sender_handoffs_total",
		Help: "Jobs refused by their endpoint's cap that waited in process and then got a slot, mostly one handed over as a request ended.",
	})
	scheduled = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_sender_scheduled_total",
		Help: "Jobs stored as message schedules: every retry, and limit waits too long for the consumer.",
	})
	disabledEndpoints = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_endpoints_disabled_total",
		Help: "Endpoints the senders disabled, by cause: gone (the receiver answered 410), failing (no success for HERALD_DISABLE_AFTER).",
	}, []string{"cause"})
	settleErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_sender_settle_errors_total",
		Help: "Acks, naks, terms and progress reports that could not be sent, by op; JetStream redelivers after AckWait.",
	}, []string{"op"})
)

// Every series the dashboard and the alert rules read (deploy/observability)
// exists from the start, at 0: rate() and increase() miss the first
// increment of a series that appears with it.
func init() {
	for _, r := range []string{"delivered", "dead_lettered", "skipped", "held", "dropped"} {
		outcomes.WithLabelValues(r)
	}
	for _, c := range deliver.Classes {
		attempts.WithLabelValues(string(c))
	}
	attempts.WithLabelValues(string(ClassPayload))
	for _, r := range []string{limit.Concurrency.String(), limit.Rate.String(), limit.Breaker.String(), reasonLookup, reasonPaused} {
		delayed.WithLabelValues(r)
	}
	for _, c := range []string{disabledGone, disabledFailing} {
		disabledEndpoints.WithLabelValues(c)
	}
}

// Limiter isolates endpoints from each other: a per-endpoint concurrency
// cap, rate limit and circuit breaker, shared by all sender replicas
// (*limit.Limiter is one). It never blocks: it grants a slot, whose
// permit's Done releases it and tells the breaker how the request went, or
// reports which limit refused and how soon asking again may succeed. What
// becomes of a refused job is the sender's to decide (see refused).
type Limiter interface {
	Admit(ctx context.Context, endpoint string, rateLimit int, leaseTTL time.Duration) (limit.Permit, limit.Verdict)
}

var _ Limiter = (*limit.Limiter)(nil)

// Holder keeps the jobs of a paused endpoint, in arrival order, until it
// is resumed (package hold).
type Holder interface {
	Hold(ctx context.Context, job *heraldv1.DeliveryJob) error
}

// Health remembers since when an endpoint has failed without a success.
type Health interface {
	// Failed records a failure and returns when the current run of failures
	// began.
	Failed(ctx context.Context, endpoint string, now time.Time) (since time.Time, err error)
	// Succeeded ends a run of failures; recovered is true if there was one.
	Succeeded(ctx context.Context, endpoint string) (recovered bool, err error)
}

// Ops publishes operational events.
type Ops interface {
	Emit(ctx context.Context, tenant, typ, key string, data any) error
}

// States of a job after an attempt, as recorded in ATTEMPTS.
const (
	StateDelivered = "delivered"
	StateRetrying  = "retrying"
	StateDead      = "dead"
)

// Endpoints is what the sender needs of the endpoint cache.
type Endpoints interface {
	Endpoint(ctx context.Context, tenant, id string) (store.Endpoint, error)
}

// Disabler turns an endpoint off, for 410 Gone.
type Disabler interface {
	DisableEndpoint(ctx context.Context, tenant, id, reason string) error
}

// Sender works jobs from DELIVERIES.
type Sender struct {
	js       jetstream.JetStream
	eps      Endpoints
	disabler Disabler
	client   *deliver.Client
	// attempts stores attempt records in ATTEMPTS, in batches by endpoint.
	attempts *attemptlog.Log
	retries  retry.Schedule
	workers  int
	ackWait  time.Duration
	// threshold is the longest wait kept inside the consumer; longer
	// waits become message schedules.
	threshold     time.Duration
	maxAckPending int
	disableAfter  time.Duration
	limiter       Limiter
	holder        Holder
	// retryAfterMax is the longest Retry-After honoured; a receiver asking
	// for more gets its job dead-lettered rather than retried early.
	retryAfterMax time.Duration
	health        Health
	ops           Ops
	payloads      Payloads
	tracer        *trace.Tracer
	endpoints     endpoints
	endpointCap   int
	log           zerolog.Logger
	rnd           func() float64
	now           func() time.Time

	// slots are the process's worker slots and jobs counts the jobs being
	// worked, in line included, while Run runs (set by Run).
	slots chan struct{}
	jobs  *sync.WaitGroup

	ready chan struct{}
	once  sync.Once
	// consuming counts the consumers pulling; ready closes when both do.
	consuming atomic.Int32
	// fetchErr is the outcome of the last fetch from DELIVERIES (see
	// Fetching).
	fetchErr atomic.Pointer[error]
}

// Option configures a Sender.
type Option func(*Sender)

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Sender) { s.log = l } }

// WithWorkers sets how many jobs this process works on at once (see
// worker for the one exception).
func WithWorkers(n int) Option { return func(s *Sender) { s.workers = n } }

// WithSchedule replaces the retry schedule.
func WithSchedule(sc retry.Schedule) Option { return func(s *Sender) { s.retries = sc } }

// WithLimiter sets the per-endpoint limits and breaker.
func WithLimiter(l Limiter) Option { return func(s *Sender) { s.limiter = l } }

// WithHolder sets where jobs of paused endpoints wait. Without one, they
// wait in the consumer (redelivered every few seconds).
func WithHolder(h Holder) Option { return func(s *Sender) { s.holder = h } }

// WithRetryAfterMax sets the longest wait a receiver's Retry-After may ask
// for (1 hour by default). Herald never retries sooner than asked: a
// receiver asking for longer gets the job dead-lettered, with the reason.
func WithRetryAfterMax(d time.Duration) Option {
	return func(s *Sender) {
		if d > 0 {
			s.retryAfterMax = d
		}
	}
}

// WithHealth sets the failure tracker and the failing period after which an
// endpoint is disabled (5 days by default).
func WithHealth(h Health, disableAfter time.Duration) Option {
	return func(s *Sender) {
		s.health = h
		if disableAfter > 0 {
			s.disableAfter = disableAfter
		}
	}
}

// WithOps sets the publisher of operational events.
func WithOps(o Ops) Option { return func(s *Sender) { s.ops = o } }

// WithScheduleThreshold sets the longest limit wait (an endpoint's cap or
// rate limit) kept inside the consumer (1 minute by default). A wait in the
// consumer still counts against its MaxAckPending; longer ones, breaker
// waits and every retry leave it as message schedules.
func WithScheduleThreshold(d time.Duration) Option { return func(s *Sender) { s.threshold = d } }

// WithEndpointConcurrency tells the sender the per-endpoint cap the
// limiter enforces, so it can refuse locally, without a Redis round trip,
// when its own requests in flight already fill it.
func WithEndpointConcurrency(n int) Option { return func(s *Sender) { s.endpointCap = n } }

// WithHandoff bounds the in-process handoff of freed slots to jobs refused
// by a fast endpoint's cap (see Handoff); unset bounds keep their defaults
// (2 s, 4,096 jobs per endpoint, 4,096 jobs and 64 MiB per process).
func WithHandoff(h Handoff) Option {
	return func(s *Sender) { s.endpoints.handoff = h.or(defaultHandoff) }
}

// WithMaxAckPending sets the consumer's MaxAckPending across all replicas.
func WithMaxAckPending(n int) Option { return func(s *Sender) { s.maxAckPending = n } }

// WithClient replaces the HTTP client (egress policy, user agent).
func WithClient(c *deliver.Client) Option { return func(s *Sender) { s.client = c } }

// WithDisabler sets what disables endpoints that answer 410.
func WithDisabler(d Disabler) Option { return func(s *Sender) { s.disabler = d } }

// WithTracer records a span per attempt, continuing the trace the job's
// message carries (the router's span, or the previous attempt's through a
// retry schedule), and carries it on in the schedule or dead letter the
// attempt leads to (package trace).
func WithTracer(t *trace.Tracer) Option { return func(s *Sender) { s.tracer = t } }

// WithAckWait sets the consumer's AckWait: how long a dead sender's jobs
// stay invisible before another sender gets them.
func WithAckWait(d time.Duration) Option { return func(s *Sender) { s.ackWait = d } }

// New returns a Sender.
func New(js jetstream.JetStream, eps Endpoints, opts ...Option) *Sender {
	s := &Sender{
		js: js, eps: eps, retries: retry.Default, workers: DefaultWorkers, ackWait: bus.DefaultAckWait,
		threshold: DefaultScheduleThreshold, disableAfter: DefaultDisableAfter, retryAfterMax: DefaultRetryAfterMax,
		log: zerolog.Nop(), rnd: rand.Float64, now: time.Now, ready: make(chan struct{}),
	}
	s.endpoints.handoff = defaultHandoff
	s.fetched(errNotFetching)
	for _, o := range opts {
		o(s)
	}
	if s.client == nil {
		s.client = deliver.New()
	}
	var conn attemptlog.Publisher
	if js != nil { // tests of the sender's parts make one without NATS
		conn = js.Conn()
	}
	s.attempts = attemptlog.New(conn, attemptlog.WithLogger(s.log))
	return s
}

// Ready is closed once the sender consumes from both its consumers.
func (s *Sender) Ready() <-chan struct{} { return s.ready }

// Errors of Fetching before the first fetch and after Run's end.
var (
	errNotFetching = errors.New("not fetching jobs yet")
	errStopped     = errors.New("stopped fetching jobs")
)

// Fetching reports whether the sender can fetch jobs now: nil when its
// last fetch from DELIVERIES worked (one that found nothing too), that
// fetch's error otherwise, or why it does not fetch (not yet, stopped). It
// is the sender's readiness: a sender whose consumer is gone or whose
// fetches fail works nothing, whatever its connection says.
func (s *Sender) Fetching() error {
	if p := s.fetchErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Sender) fetched(err error) { s.fetchErr.Store(&err) }

// Run works jobs until ctx ends, then lets requests in flight finish and
// acks or redelivers each: a graceful stop loses nothing. A lost consumer is
// recreated after a pause. It returns an error only when ctx ended while a
// consumer was failing (see bus.Consume).
//
// Jobs come from two consumers sharing the worker slots: new jobs from
// DELIVERIES, and jobs back from a wait from RETRIES (see
// bus.SenderDueConsumer). The job is the same either way.
func (s *Sender) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	slots := make(chan struct{}, s.workers)
	s.slots, s.jobs = slots, &wg
	cc := bus.SenderConsumerConfig{AckWait: s.ackWait, MaxAckPending: s.maxAckPending}
	wg.Add(2)
	go func() { defer wg.Done(); s.sweepEndpoints(ctx) }()
	var dueErr error
	go func() {
		defer wg.Done()
		dueErr = bus.Consume(ctx, s.log, "sender (due)", func(ctx context.Context) error { return s.consumeDue(ctx, cc, slots, &wg) })
	}()
	err := bus.Consume(ctx, s.log, "sender", func(ctx context.Context) error { return s.consume(ctx, cc, slots, &wg) })
	s.fetched(errStopped)
	s.endpoints.stop() // jobs in line go on now rather than at the end of their wait
	wg.Wait()
	s.attempts.Flush() // the last records, and the acks that wait for them
	return errors.Join(err, dueErr)
}

// endpointIdle is how long an endpoint's state is kept after its last
// request.
const endpointIdle = 10 * time.Minute

// sweepEndpoints forgets idle endpoints' state every minute until ctx ends.
func (s *Sender) sweepEndpoints(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.endpoints.sweep(now.Add(-endpointIdle))
		}
	}
}

// consume pulls only as many jobs as there are idle workers, so no job ages
// against AckWait in a local buffer while workers are busy.
func (s *Sender) consume(ctx context.Context, cc bus.SenderConsumerConfig, slots chan struct{}, wg *sync.WaitGroup) error {
	cons, err := bus.SenderConsumer(ctx, s.js, cc)
	if err != nil {
		s.fetched(err)
		return err
	}
	s.fetched(nil) // the consumer answered: fetching works until a fetch says otherwise
	s.consumingNow()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		if ctx.Err() != nil { // select picks at random when both are ready
			<-slots
			return nil
		}
		n := 1
	more:
		for n < s.workers {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		// A batch keeps the worker slots it asked for until it ends, so a
		// short wait: slots it could not fill go back to the pool soon.
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(50*time.Millisecond))
		if err != nil {
			release(slots, n)
			err = fmt.Errorf("fetch jobs: %w", err)
			s.fetched(err)
			return err
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			wg.Add(1)
			go func() {
				w := &worker{slots: slots, held: true}
				defer func() { w.release(); wg.Done() }()
				s.work(context.WithoutCancel(ctx), msg)
			}()
		}
		release(slots, n-got)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("fetch jobs: %w", err)
			s.fetched(err)
			return err
		}
		s.fetched(nil)
	}
}

// dueBatch bounds the jobs back from a wait that one fetch takes.
const dueBatch = 16

// consumeDue pulls jobs back from a wait (RETRIES' fired schedules). Unlike
// consume it holds no worker slot while it waits for them: they come
// seldom, and a fetch that kept slots for its whole wait starved the new
// jobs of DELIVERIES (latency p99 went from 13 ms to 400 ms in make bench).
// A job fetched here takes a slot when one is free; until then it waits in
// hand, at most dueBatch of them, far below AckWait behind requests that
// each end within an endpoint's timeout.
func (s *Sender) consumeDue(ctx context.Context, cc bus.SenderConsumerConfig, slots chan struct{}, wg *sync.WaitGroup) error {
	cons, err := bus.SenderDueConsumer(ctx, s.js, cc)
	if err != nil {
		return err
	}
	s.consumingNow()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(dueBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("fetch due jobs: %w", err)
		}
		for msg := range batch.Messages() {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				s.settle(msg.Nak(), "nak") // stopping: the next sender takes it at once
				continue
			}
			wg.Add(1)
			go func() {
				w := &worker{slots: slots, held: true}
				defer func() { w.release(); wg.Done() }()
				s.work(context.WithoutCancel(ctx), msg)
			}()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetch due jobs: %w", err)
		}
	}
	return nil
}

// consumingNow notes that one of the two consumers pulls; Ready closes
// once both do.
func (s *Sender) consumingNow() {
	if s.consuming.Add(1) >= 2 {
		s.once.Do(func() { close(s.ready) })
	}
}

func release(slots chan struct{}, n int) {
	for range n {
		<-slots
	}
}

// worker is a job's claim on one of the process's worker slots. A job that
// waits in process for a slot of its endpoint gives its worker back
// meanwhile, so waiting jobs never keep other endpoints' jobs from being
// fetched. Handed an endpoint slot, it takes a worker again if one is free
// and runs without one otherwise: waiting for a worker would leave the
// endpoint's slot idle. Requests in flight can thus exceed the worker count
// by at most the caps of the endpoints whose jobs wait here.
type worker struct {
	slots chan struct{}
	held  bool
}

func (w *worker) release() {
	if w != nil && w.held {
		<-w.slots
		w.held = false
	}
}

func (w *worker) reclaim() {
	if w == nil || w.held {
		return
	}
	select {
	case w.slots <- struct{}{}:
		w.held = true
	default:
	}
}
