// Package sender delivers jobs: it pulls them from the shared DELIVERIES
// consumer, signs and sends each, and acks on 2xx. Failures wait for their
// next attempt inside JetStream (NakWithDelay), never in a sender goroutine;
// a job that used its attempts goes to the DLQ before it is acked.
package sender

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/ops"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

var (
	attempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_sender_attempts_total",
		Help: "HTTP attempts by outcome class (none = 2xx).",
	}, []string{"class"})
	outcomes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_sender_jobs_total",
		Help: "Jobs finished by result: delivered, dead_lettered, dropped (endpoint deleted).",
	}, []string{"result"})
	latency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "herald_delivery_latency_seconds",
		Help:    "From event accepted to 2xx received.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
	})
	inFlight = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_sender_in_flight",
		Help: "Jobs being worked on by this process.",
	})
	delayed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_sender_delayed_total",
		Help: "Jobs put back without an attempt, by reason: concurrency, rate, breaker, lookup (endpoint unreadable).",
	}, []string{"reason"})
	handoffs = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_sender_handoffs_total",
		Help: "Jobs refused by their endpoint's cap that waited in process and then got a slot, mostly one handed over as a request ended.",
	})
	scheduled = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_sender_scheduled_total",
		Help: "Jobs moved out of the consumer to wait as message schedules.",
	})
)

// Reasons a limiter refuses a request.
const (
	ReasonConcurrency = "concurrency"
	ReasonRate        = "rate"
	ReasonBreaker     = "breaker"
	// reasonLookup: the endpoint could not be read (store unavailable).
	reasonLookup = "lookup"
)

// Admission is a limiter's answer.
type Admission struct {
	OK     bool
	Wait   time.Duration
	Reason string
}

// Permit is a granted request slot; Done releases it and tells the breaker
// how the request went.
type Permit interface {
	Done(ctx context.Context, success bool)
}

// Limiter isolates endpoints from each other: a per-endpoint concurrency
// cap, rate limit and circuit breaker, shared by all sender replicas. It
// never blocks: it grants a slot or says how long to wait.
type Limiter interface {
	Admit(ctx context.Context, endpoint string, rateLimit int, leaseTTL time.Duration) (Permit, Admission)
}

// Skips counts deliveries of a job message that made no attempt, so that a
// job delayed by a limit keeps its attempts.
type Skips interface {
	Skip(ctx context.Context, key string) error
	Skips(ctx context.Context, key string) (int, error)
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
	retries  retry.Schedule
	workers  int
	ackWait  time.Duration
	// threshold is the longest wait kept inside the consumer; longer
	// waits become message schedules.
	threshold     time.Duration
	maxAckPending int
	disableAfter  time.Duration
	limiter       Limiter
	skips         Skips
	health        Health
	ops           Ops
	payloads      Payloads
	endpoints     endpoints
	endpointCap   int
	log           zerolog.Logger
	rnd           func() float64
	now           func() time.Time

	ready chan struct{}
	once  sync.Once
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

// WithSkips sets where skipped deliveries are counted.
func WithSkips(k Skips) Option { return func(s *Sender) { s.skips = k } }

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

// WithScheduleThreshold sets the longest wait kept inside the consumer
// (1 minute by default). A wait in the consumer still counts against its
// MaxAckPending; longer ones leave it as message schedules.
func WithScheduleThreshold(d time.Duration) Option { return func(s *Sender) { s.threshold = d } }

// WithEndpointConcurrency tells the sender the per-endpoint cap the
// limiter enforces, so it can refuse locally, without a Redis round trip,
// when its own requests in flight already fill it.
func WithEndpointConcurrency(n int) Option { return func(s *Sender) { s.endpointCap = n } }

// WithMaxAckPending sets the consumer's MaxAckPending across all replicas.
func WithMaxAckPending(n int) Option { return func(s *Sender) { s.maxAckPending = n } }

// WithClient replaces the HTTP client (egress policy, user agent).
func WithClient(c *deliver.Client) Option { return func(s *Sender) { s.client = c } }

// WithDisabler sets what disables endpoints that answer 410.
func WithDisabler(d Disabler) Option { return func(s *Sender) { s.disabler = d } }

// WithAckWait sets the consumer's AckWait: how long a dead sender's jobs
// stay invisible before another sender gets them.
func WithAckWait(d time.Duration) Option { return func(s *Sender) { s.ackWait = d } }

// New returns a Sender.
func New(js jetstream.JetStream, eps Endpoints, opts ...Option) *Sender {
	s := &Sender{
		js: js, eps: eps, retries: retry.Default, workers: 256, ackWait: 30 * time.Second,
		threshold: time.Minute, disableAfter: 5 * 24 * time.Hour,
		log: zerolog.Nop(), rnd: rand.Float64, now: time.Now, ready: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.client == nil {
		s.client = deliver.New()
	}
	return s
}

// Ready is closed once the sender consumes.
func (s *Sender) Ready() <-chan struct{} { return s.ready }

// Run works jobs until ctx ends, then lets requests in flight finish and
// acks or redelivers each: a graceful stop loses nothing. A lost consumer is
// recreated after a pause.
func (s *Sender) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, s.workers)
	wg.Add(1)
	go func() { defer wg.Done(); s.sweepEndpoints(ctx) }()
	bus.Consume(ctx, s.log, "sender", func(ctx context.Context) error { return s.consume(ctx, slots, &wg) })
	return nil
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
func (s *Sender) consume(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) error {
	cons, err := bus.SenderConsumer(ctx, s.js, bus.SenderConsumerConfig{AckWait: s.ackWait, MaxAckPending: s.maxAckPending})
	if err != nil {
		return err
	}
	s.once.Do(func() { close(s.ready) })
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
			return fmt.Errorf("fetch jobs: %w", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			wg.Add(1)
			go func() {
				w := &worker{slots: slots, held: true}
				defer func() { w.release(); wg.Done() }()
				s.work(context.WithoutCancel(ctx), msg, w)
			}()
		}
		release(slots, n-got)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetch jobs: %w", err)
		}
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

// work handles one job from start to ack.
func (s *Sender) work(ctx context.Context, msg jetstream.Msg, w *worker) {
	inFlight.Inc()
	defer inFlight.Dec()
	job := &heraldv1.DeliveryJob{}
	if err := proto.Unmarshal(msg.Data(), job); err != nil || job.Event == nil {
		s.log.Error().Err(err).Str("subject", msg.Subject()).Msg("undecodable job terminated")
		_ = msg.TermWithReason("undecodable job")
		return
	}
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error().Err(err).Msg("job without metadata")
		_ = msg.Nak()
		return
	}
	log := s.log.With().Str("job_id", job.Id).Str("event_id", job.Event.Id).Str("tenant", job.TenantId).Str("endpoint_id", job.EndpointId).Logger()

	ep, err := s.eps.Endpoint(ctx, job.TenantId, job.EndpointId)
	if errors.Is(err, store.ErrNotFound) {
		// The endpoint (or its tenant) was deleted: its jobs go with it.
		outcomes.WithLabelValues("dropped").Inc()
		log.Info().Msg("endpoint deleted; job dropped")
		s.finish(ctx, msg, job, log)
		return
	}
	attempt := s.attemptNumber(ctx, job, meta)
	if err != nil {
		// The store or its key is unavailable: not the endpoint's fault, so
		// the wait uses no attempt.
		log.Warn().Err(err).Msg("endpoint lookup failed; job redelivered shortly")
		s.wait(ctx, msg, job, meta, attempt-1, Admission{Reason: reasonLookup, Wait: time.Second}, log)
		return
	}

	if !ep.Enabled {
		s.deadLetter(ctx, msg, job, nil, "endpoint is disabled"+reasonSuffix(ep.DisabledReason), log)
		return
	}
	if attempt > ep.MaxAttempts {
		// Its attempts were used (the last dead-letter publish failed, or
		// max_attempts was lowered): no further HTTP request.
		s.deadLetter(ctx, msg, job, nil, fmt.Sprintf("attempt budget of %d used", ep.MaxAttempts), log)
		return
	}

	timeout := time.Duration(ep.TimeoutMS) * time.Millisecond
	permit, adm := s.admit(ctx, &ep, timeout, len(msg.Data()), w)
	if !adm.OK {
		s.wait(ctx, msg, job, meta, attempt-1, s.pace(&ep, adm), log)
		return
	}

	started := s.endpoints.start(ep.ID)
	rec, decision := s.attempt(ctx, msg, &ep, job, attempt)
	if permit != nil {
		permit.Done(ctx, rec.StatusCode >= 200 && rec.StatusCode <= 299)
	}
	s.endpoints.end(ep.ID, started) // after Done: a job woken by it finds the slot free everywhere
	s.trackHealth(ctx, &ep, job, decision, log)
	switch decision.Action {
	case Ack:
		rec.State = StateDelivered
	case Retry:
		rec.State = StateRetrying
		rec.NextAttemptAtUnixMs = s.now().Add(decision.Delay).UnixMilli()
	case DeadLetter:
		rec.State = StateDead
	}
	s.record(rec)
	switch decision.Action {
	case Ack:
		outcomes.WithLabelValues("delivered").Inc()
		latency.Observe(time.Since(time.UnixMilli(job.Event.AcceptedAtUnixMs)).Seconds())
		s.finish(ctx, msg, job, log)
	case Retry:
		log.Debug().Int("attempt", attempt).Dur("delay", decision.Delay).Str("reason", decision.Reason).Msg("attempt failed; retrying")
		s.later(ctx, msg, job, meta, attempt, decision.Delay, log)
	case DeadLetter:
		if decision.Disable {
			s.disable(ctx, job, decision.Reason, log)
		}
		s.deadLetter(ctx, msg, job, rec, decision.Reason, log)
	}
}

// admit asks the limiter for a slot at the endpoint. It never asks Redis
// when this process alone already fills the endpoint's cap. A job refused
// by the cap of a fast endpoint waits here, briefly and without its worker
// (see endpoints.holdFor), to be handed the slot of a request of this
// process as it ends: a hot endpoint then stays at its cap instead of
// idling while its refused jobs wait out their delays in JetStream. Any
// other refusal goes back at once.
func (s *Sender) admit(ctx context.Context, ep *store.Endpoint, timeout time.Duration, size int, w *worker) (Permit, Admission) {
	var until time.Time
	for {
		permit, adm := Permit(nil), Admission{OK: true}
		switch {
		case s.endpointCap > 0 && until.IsZero() && s.endpoints.queueing(ep.ID),
			s.endpointCap > 0 && s.endpoints.busy(ep.ID, s.endpointCap):
			adm = Admission{Reason: ReasonConcurrency}
		case s.limiter != nil:
			permit, adm = s.limiter.Admit(ctx, ep.ID, ep.RateLimit, timeout+5*time.Second)
		}
		if adm.OK && !until.IsZero() {
			handoffs.Inc()
		}
		if adm.OK || adm.Reason != ReasonConcurrency {
			return permit, adm
		}
		now := time.Now()
		if until.IsZero() {
			d := s.endpoints.holdFor(ep.ID, s.endpointCap, size)
			if d <= 0 {
				return nil, adm
			}
			until = now.Add(d)
		}
		if !now.Before(until) {
			return nil, adm
		}
		w.release()
		s.endpoints.hold(ep.ID, until.Sub(now), size)
		w.reclaim()
	}
}

// attemptNumber is the number of the attempt this delivery makes: attempts
// made before the job was (re)published, plus this message's deliveries,
// less the deliveries that a limit delayed without an attempt.
func (s *Sender) attemptNumber(ctx context.Context, job *heraldv1.DeliveryJob, meta *jetstream.MsgMetadata) int {
	n := int(job.PriorAttempts) + int(meta.NumDelivered)
	if meta.NumDelivered > 1 && s.skips != nil {
		if k, err := s.skips.Skips(ctx, skipKey(meta)); err == nil {
			n -= k
		}
	}
	return max(n, int(job.PriorAttempts)+1)
}

func skipKey(meta *jetstream.MsgMetadata) string {
	return strconv.FormatUint(meta.Sequence.Stream, 10)
}

// maxPace bounds the wait of a job refused by an endpoint's cap or rate
// limit: past it the job comes back and is refused again, which costs
// little at that spacing.
const maxPace = 10 * time.Second

// pace sets how long a job refused by the endpoint's cap or rate limit
// waits in JetStream: its place in the endpoint's virtual queue (see
// endpoints.backoff), never less than the limiter's own hint for a rate
// refusal. The limiter's hint for a full cap is its worst case (the first
// lease's expiry), so for that the queue alone decides.
func (s *Sender) pace(ep *store.Endpoint, adm Admission) Admission {
	var floor time.Duration
	switch adm.Reason {
	case ReasonRate:
		floor = adm.Wait
	case ReasonConcurrency:
	default:
		return adm
	}
	slot := s.endpoints.slotTime(ep.ID, s.endpointCap, ep.RateLimit)
	adm.Wait = s.endpoints.backoff(ep.ID, slot, floor, min(maxPace, s.threshold), s.now())
	return adm
}

// wait puts back a job that a limit refused, without using an attempt. A
// short wait (an endpoint's concurrency cap or rate limit) is a
// NakWithDelay, counted as a skip; a breaker's wait, any wait longer than
// the schedule threshold, or a skip that cannot be counted (Redis down)
// leaves the consumer as a message schedule, so jobs of an unhealthy
// endpoint never fill MaxAckPending for everyone else and no wait uses an
// attempt.
func (s *Sender) wait(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, meta *jetstream.MsgMetadata, done int, adm Admission, log zerolog.Logger) {
	delayed.WithLabelValues(adm.Reason).Inc()
	if adm.Reason != ReasonConcurrency && adm.Reason != ReasonRate {
		// Jitter, so jobs refused together do not all return together
		// (paced refusals are spread already).
		adm.Wait += time.Duration(float64(adm.Wait) * 0.2 * s.rnd())
	}
	// A short wait stays in the consumer when the skip can be counted where
	// every replica sees it; otherwise the job carries its attempt count
	// itself, as a schedule.
	if adm.Reason != ReasonBreaker && adm.Wait <= s.threshold && s.skips != nil {
		if err := s.skips.Skip(ctx, skipKey(meta)); err == nil {
			_ = msg.NakWithDelay(adm.Wait)
			return
		}
	}
	s.schedule(ctx, msg, job, meta, done, adm.Wait, log)
}

// later waits out a retry delay: inside the consumer when short, as a
// message schedule when longer than the threshold.
func (s *Sender) later(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, meta *jetstream.MsgMetadata, done int, d time.Duration, log zerolog.Logger) {
	if d <= s.threshold {
		_ = msg.NakWithDelay(d)
		return
	}
	s.schedule(ctx, msg, job, meta, done, d, log)
}

// schedule acks the job after storing a one-shot message schedule that
// publishes it again after d with done attempts recorded. The schedule is
// stored first: a crash in between delivers twice, never zero times.
func (s *Sender) schedule(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, meta *jetstream.MsgMetadata, done int, d time.Duration, log zerolog.Logger) {
	next := proto.Clone(job).(*heraldv1.DeliveryJob)
	next.PriorAttempts = uint32(done)
	b, err := proto.Marshal(next)
	if err == nil {
		at := s.now().Add(d).Truncate(time.Second).Add(time.Second) // schedules have 1 s granularity
		subject := bus.RetrySubject(job.Id, int(meta.Sequence.Stream))
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = s.js.PublishMsg(pctx, &nats.Msg{Subject: subject, Data: b},
			jetstream.WithScheduleAt(at),
			jetstream.WithScheduleTarget(bus.DueSubject(job.TenantId, job.EndpointId, job.Id)),
			jetstream.WithScheduleTTL(bus.DueTTL),
			jetstream.WithMsgID(subject+":"+strconv.FormatUint(meta.NumDelivered, 10)),
			jetstream.WithExpectStream(bus.StreamRetries))
		cancel()
	}
	if err != nil {
		// Not lost: it waits inside the consumer instead.
		log.Warn().Err(err).Msg("schedule not stored; waiting in the consumer")
		_ = msg.NakWithDelay(d)
		return
	}
	scheduled.Inc()
	_ = msg.Ack()
}

// disable turns the endpoint off (410 Gone) and says so on the ops subject.
func (s *Sender) disable(ctx context.Context, job *heraldv1.DeliveryJob, reason string, log zerolog.Logger) {
	if s.disabler == nil {
		return
	}
	if err := s.disabler.DisableEndpoint(ctx, job.TenantId, job.EndpointId, reason); err != nil {
		log.Error().Err(err).Msg("disable endpoint failed")
		return
	}
	log.Warn().Str("reason", reason).Msg("endpoint disabled")
	s.emit(ctx, job, ops.EndpointDisabled, job.EndpointId+":"+strconv.FormatInt(s.now().UnixMilli(), 10),
		map[string]any{"endpoint_id": job.EndpointId, "reason": reason}, log)
}

// trackHealth disables an endpoint that has failed without a single success
// for longer than the configured period, and reports an endpoint's return to
// health.
func (s *Sender) trackHealth(ctx context.Context, ep *store.Endpoint, job *heraldv1.DeliveryJob, d Decision, log zerolog.Logger) {
	if s.health == nil {
		return
	}
	if d.Action == Ack {
		if recovered, err := s.health.Succeeded(ctx, ep.ID); err == nil && recovered {
			s.emit(ctx, job, ops.EndpointRecovered, ep.ID+":"+strconv.FormatInt(s.now().UnixMilli()/60000, 10),
				map[string]any{"endpoint_id": ep.ID}, log)
		}
		return
	}
	since, err := s.health.Failed(ctx, ep.ID, s.now())
	if err != nil || since.IsZero() || s.now().Sub(since) < s.disableAfter {
		return
	}
	s.disable(ctx, job, fmt.Sprintf("failing without a success since %s", since.UTC().Format(time.RFC3339)), log)
}

func (s *Sender) emit(ctx context.Context, job *heraldv1.DeliveryJob, typ, key string, data map[string]any, log zerolog.Logger) {
	if s.ops == nil || ops.IsOps(job.Event.Type) {
		return
	}
	if err := s.ops.Emit(ctx, job.TenantId, typ, key, data); err != nil {
		log.Warn().Err(err).Str("type", typ).Msg("operational event not stored")
	}
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

// attempt sends one request and decides what follows. While a slow request
// runs, it tells JetStream the job is in progress so that no other sender
// gets it: a slow but alive request is never sent twice.
func (s *Sender) attempt(ctx context.Context, msg jetstream.Msg, ep *store.Endpoint, job *heraldv1.DeliveryJob, attempt int) (*heraldv1.Attempt, Decision) {
	now := s.now()
	rec := &heraldv1.Attempt{
		JobId: job.Id, EventId: job.Event.Id, TenantId: job.TenantId, EndpointId: job.EndpointId,
		Number: uint32(attempt), AtUnixMs: now.UnixMilli(), EventType: job.Event.Type, ReplayId: job.ReplayId,
	}
	req, err := s.build(ctx, ep, job, attempt, now)
	var out deliver.Outcome
	if err != nil {
		out = buildFailure(err)
	} else {
		stop := s.keepAlive(msg, req.Timeout)
		out = s.client.Do(ctx, req)
		stop()
	}
	attempts.WithLabelValues(string(out.Class)).Inc()
	rec.StatusCode = int32(out.Status)
	rec.LatencyUs = out.Latency.Microseconds()
	rec.ErrorClass = string(out.Class)
	rec.Error = out.Err
	rec.ResponseBody = out.Body
	if bodyGone(err) { // no attempt can succeed without the body
		return rec, Decision{Action: DeadLetter, Reason: out.Err}
	}
	return rec, Decide(out, attempt, ep.MaxAttempts, s.retries, s.rnd, s.now(), s.deadline(job, ep.MaxAttempts))
}

// deadline is when the job's last attempt is due at the latest: the job's
// creation plus the whole schedule up to max attempts, jitter included. A
// server's Retry-After never pushes a retry past it.
func (s *Sender) deadline(job *heraldv1.DeliveryJob, maxAttempts int) time.Time {
	if job.CreatedAtUnixMs == 0 {
		return time.Time{}
	}
	var total time.Duration
	for n := 1; n < maxAttempts; n++ {
		total += s.retries.Delay(n, nil)
	}
	return time.UnixMilli(job.CreatedAtUnixMs).Add(total + total/5)
}

// keepAlive sends InProgress every third of AckWait while a request that
// may outlast it runs.
func (s *Sender) keepAlive(msg jetstream.Msg, timeout time.Duration) (stop func()) {
	if timeout < s.ackWait/3 {
		return func() {}
	}
	t := time.NewTicker(s.ackWait / 3)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

// record stores an attempt in ATTEMPTS without waiting: the history must
// never slow sending.
func (s *Sender) record(rec *heraldv1.Attempt) {
	b, err := proto.Marshal(rec)
	if err != nil {
		return
	}
	if _, err := s.js.PublishMsgAsync(&nats.Msg{Subject: bus.AttemptSubject(rec.TenantId, rec.EndpointId), Data: b}); err != nil {
		s.log.Debug().Err(err).Msg("attempt record not stored")
	}
}

// deadLetter stores the job in the DLQ and only then acks it, so a job is
// always in exactly one of DELIVERIES or DLQ (or briefly both).
func (s *Sender) deadLetter(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, last *heraldv1.Attempt, reason string, log zerolog.Logger) {
	dl := &heraldv1.DeadLetter{Job: job, Reason: reason, DeadAtUnixMs: s.now().UnixMilli()}
	if last != nil {
		dl.Attempts = []*heraldv1.Attempt{last}
	}
	b, err := proto.Marshal(dl)
	if err == nil {
		meta, _ := msg.Metadata()
		var seq uint64
		if meta != nil {
			seq = meta.Sequence.Stream
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = s.js.PublishMsg(pctx, &nats.Msg{Subject: bus.DLQSubject(job.TenantId, job.EndpointId), Data: b},
			jetstream.WithMsgID(fmt.Sprintf("dead:%s:%s:%d", job.Id, job.ReplayId, seq)), jetstream.WithExpectStream(bus.StreamDLQ))
		cancel()
	}
	if err != nil {
		log.Error().Err(err).Msg("dead-letter not stored; job redelivered")
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	outcomes.WithLabelValues("dead_lettered").Inc()
	log.Warn().Str("reason", reason).Msg("job dead-lettered")
	_ = msg.Ack()
	s.emit(ctx, job, ops.MessageAttemptsExhausted, job.Id+":"+job.ReplayId,
		map[string]any{"event_id": job.Event.Id, "event_type": job.Event.Type, "endpoint_id": job.EndpointId, "reason": reason}, log)
}
