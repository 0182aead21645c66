package sender

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/ops"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/trace"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// The life of one job message, from fetch to ack. Every path ends in one
// transition, and each stores the job's next place before the message is
// acked, so a job is always in DELIVERIES, RETRIES, HELD or the DLQ
// (briefly in two, never in none):
//
//	after fetch, when                       transition
//	the message does not decode             term (logged)
//	the endpoint was deleted                drop: ack
//	the endpoint cannot be read             wait 1 s in the consumer (nak)
//	the endpoint is disabled                skip: DLQ entry marked skipped, ack
//	the endpoint is paused                  hold: HELD, ack
//	its attempt number > max_attempts       dead-letter (max_attempts was lowered)
//	refused by the cap of a fast endpoint   line: wait in process for a slot freed here, then admitted or as below
//	refused by the cap or the rate limit    wait: nak with the paced delay
//	refused by the breaker, or a long wait  wait: schedule with the same count, ack
//	admitted: the attempt answers 2xx       ack (delivered)
//	  410 Gone                              disable the endpoint, dead-letter
//	  Retry-After above HERALD_RETRY_AFTER_MAX   dead-letter, with that reason
//	  failed, attempts left                 retry: schedule with the count raised, ack
//	  failed, none left                     dead-letter
//
// The limiter only reports why it refused (a limit.Verdict: the cause and
// how soon asking again may succeed); which of the two waits follows, and
// for how long, is decided here (refused).
//
// The attempt count. The attempt a message makes is always
// job.prior_attempts + 1. Only a recorded outcome raises the count: a
// failed attempt publishes the job again, as a message schedule, with
// prior_attempts set to the attempt just made, and only then acks the
// message. Every other way back to a sender (a limit's nak, an AckWait
// redelivery after a sender died) leaves the count as it was, so a wait
// never uses an attempt, and a sender killed before it could record an
// outcome makes that attempt again rather than lose it. The count lives in
// the message alone: nothing in Redis or in JetStream's delivery count can
// make it disagree with what receivers saw.
const (
	// reasonLookup: the endpoint could not be read (store unavailable).
	reasonLookup = "lookup"
	// reasonPaused: the endpoint is paused and no Holder is configured.
	reasonPaused = "paused"
)

// Defaults of the sender's settings (the HERALD_* variable of each is in
// pkg/service's settings table).
const (
	// DefaultRetryAfterMax is the longest Retry-After a receiver may ask
	// for (HERALD_RETRY_AFTER_MAX).
	DefaultRetryAfterMax = time.Hour
	// DefaultWorkers is how many jobs one process works on at once
	// (HERALD_SENDER_WORKERS).
	DefaultWorkers = 256
	// DefaultScheduleThreshold is the longest limit wait kept in the
	// consumer (HERALD_SCHEDULE_THRESHOLD).
	DefaultScheduleThreshold = time.Minute
	// DefaultDisableAfter is how long an endpoint may fail without a
	// success before it is disabled (HERALD_DISABLE_AFTER).
	DefaultDisableAfter = 5 * 24 * time.Hour
)

// work handles one job message from fetch to ack.
func (s *Sender) work(ctx context.Context, msg jetstream.Msg) {
	inFlight.Inc()
	defer inFlight.Dec()
	job := &heraldv1.DeliveryJob{}
	if err := proto.Unmarshal(msg.Data(), job); err != nil || job.Event == nil {
		s.log.Error().Err(err).Str("subject", msg.Subject()).Msg("undecodable job terminated")
		s.settle(msg.TermWithReason("undecodable job"), "term")
		return
	}
	log := s.log.With().Str("job_id", job.Id).Str("event_id", job.Event.Id).Str("tenant_id", job.TenantId).Str("endpoint_id", job.EndpointId).Logger()
	attempt := int(job.PriorAttempts) + 1
	// The job's trace: what it stores next (a schedule, a dead letter)
	// carries it on, so every attempt of the event joins one trace.
	ctx = s.tracer.Extract(ctx, msg.Headers())

	ep, err := s.eps.Endpoint(ctx, job.TenantId, job.EndpointId)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// The endpoint (or its tenant) was deleted: its jobs go with it.
		outcomes.WithLabelValues("dropped").Inc()
		log.Info().Msg("endpoint deleted; job dropped")
		s.finish(ctx, msg, job, log)
		return
	case err != nil:
		// The store or its key is unavailable: not the endpoint's fault.
		log.Warn().Err(err).Msg("endpoint lookup failed; job redelivered shortly")
		s.wait(ctx, msg, job, delay{reason: reasonLookup, wait: time.Second}, log)
		return
	case !ep.Enabled:
		s.skip(ctx, msg, job, ep.SkipReason(), log)
		return
	case ep.Paused:
		s.hold(ctx, msg, job, log)
		return
	case attempt > ep.MaxAttempts:
		// max_attempts was lowered below the attempts already made.
		s.deadLetter(ctx, msg, job, nil, fmt.Sprintf("attempt budget of %d used", ep.MaxAttempts), false, log)
		return
	}

	permit, v := s.admit(ctx, &ep, false)
	if !v.Allowed {
		s.refusedJob(ctx, msg, job, &ep, v, time.Time{}, false, log)
		return
	}
	s.send(ctx, msg, job, &ep, permit, log)
}

// send makes the job's attempt with the slot admit granted, and settles the
// job by its outcome.
func (s *Sender) send(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, ep *store.Endpoint, permit limit.Permit, log zerolog.Logger) {
	attempt := int(job.PriorAttempts) + 1
	ctx, span := s.tracer.Start(ctx, trace.SpanAttempt, oteltrace.SpanKindClient)
	defer span.End() // after the outcome is stored: a retry's schedule carries this span
	started := s.endpoints.start(ep.ID)
	rec, decision := s.attempt(ctx, msg, ep, job, attempt)
	if span.IsRecording() {
		traceAttempt(span, rec, decision)
	}
	// The slot passes to the first job of the endpoint waiting here, if
	// any: the permit is handed over, this outcome recorded on the way, in
	// one Redis round trip instead of a release and a grant. Otherwise it is
	// released. Either happens before end, so that the slot's time includes
	// it (the pacing of refused jobs reads it) and a job woken by end finds
	// the slot free everywhere.
	success := rec.StatusCode >= 200 && rec.StatusCode <= 299
	next := s.endpoints.first(ep.ID)
	h := handover{handed: true}
	switch {
	case next != nil && permit != nil:
		h.permit, h.verdict = permit.Handover(ctx, success, ep.RateLimit, leaseTTL(ep))
		h.decided = true
	case permit != nil:
		permit.Done(ctx, success)
	}
	s.endpoints.end(ep.ID, started, next != nil)
	if next != nil {
		go next.resume(h)
	}
	s.trackHealth(ctx, ep, job, decision, log)
	switch decision.Action {
	case Ack:
		rec.State = StateDelivered
	case Retry:
		rec.State = StateRetrying
		rec.NextAttemptAtUnixMs = s.retryAt(decision.Delay).UnixMilli()
	case DeadLetter:
		rec.State = StateDead
	}
	// The usual end, a delivered job with nothing to release, is a plain
	// ack: it follows the record, on the same connection, when the
	// record's batch goes (see attemptlog). Every other end follows a
	// record published at once.
	plainAck := decision.Action == Ack && !s.releases(job)
	if plainAck {
		s.attempts.Record(rec, func() { s.settle(msg.Ack(), "ack") })
	} else {
		s.attempts.RecordNow(rec)
	}
	switch decision.Action {
	case Ack:
		outcomes.WithLabelValues("delivered").Inc()
		latency.Observe(time.Since(time.UnixMilli(job.Event.AcceptedAtUnixMs)).Seconds())
		if !plainAck {
			s.finish(ctx, msg, job, log)
		}
	case Retry:
		log.Debug().Int("attempt", attempt).Dur("delay", decision.Delay).Str("reason", decision.Reason).Msg("attempt failed; retrying")
		s.schedule(ctx, msg, job, attempt, decision.Delay, log)
	case DeadLetter:
		if decision.Disable {
			s.disable(ctx, job, decision.Reason, disabledGone, log)
		}
		s.deadLetter(ctx, msg, job, rec, decision.Reason, false, log)
	}
}

// traceAttempt describes an attempt on its span: the job, the attempt's
// number, the receiver's status and the outcome class; a failed attempt's
// span has status Error.
func traceAttempt(span oteltrace.Span, rec *heraldv1.Attempt, d Decision) {
	span.SetAttributes(
		attribute.String(trace.AttrTenantID, rec.TenantId),
		attribute.String(trace.AttrEndpointID, rec.EndpointId),
		attribute.String(trace.AttrEventID, rec.EventId),
		attribute.String(trace.AttrJobID, rec.JobId),
		attribute.Int(trace.AttrAttempt, int(rec.Number)),
		attribute.Int(trace.AttrStatusCode, int(rec.StatusCode)),
		attribute.String(trace.AttrOutcomeClass, rec.ErrorClass),
	)
	if d.Action != Ack {
		msg := rec.ErrorClass
		if rec.Error != "" {
			msg += ": " + rec.Error
		}
		span.SetStatus(codes.Error, msg)
	}
}

// leaseMargin is added to an endpoint's timeout for the lease TTL of its
// slot: how long the slot outlives its request when Done never comes (the
// sender died).
const leaseMargin = 5 * time.Second

// admit asks for a slot at the endpoint, in two layers: this process's
// own count (it never asks Redis when its own requests already fill the
// endpoint's cap, nor, unless queued, when jobs of this process wait in line
// for a slot), and the limiter's shared leases. queued: the job comes from
// the line.
func (s *Sender) admit(ctx context.Context, ep *store.Endpoint, queued bool) (limit.Permit, limit.Verdict) {
	switch {
	case s.endpointCap > 0 && !queued && s.endpoints.queueing(ep.ID),
		s.endpointCap > 0 && s.endpoints.busy(ep.ID, s.endpointCap):
		return nil, limit.Verdict{Cause: limit.Concurrency}
	case s.limiter != nil:
		return s.limiter.Admit(ctx, ep.ID, ep.RateLimit, leaseTTL(ep))
	}
	return nil, limit.Verdict{Allowed: true}
}

// leaseTTL is how long the limiter keeps a slot of ep for a request that
// never reports its end: its timeout and leaseMargin.
func leaseTTL(ep *store.Endpoint) time.Duration {
	return time.Duration(ep.TimeoutMS)*time.Millisecond + leaseMargin
}

// refusedJob decides what becomes of a job the limits refused. One refused
// by the cap of a fast endpoint waits in this process's line, briefly and
// without a worker (see endpoints.holdFor), to be handed the slot of a
// request of this process as it ends: a hot endpoint then stays at its cap
// instead of idling while its refused jobs wait out their delays in
// JetStream. until is when its wait here ends (zero: not in line yet);
// first puts it back at the front of the line (it was handed a slot that
// another process's job took). Any other refusal goes back to JetStream
// (wait).
func (s *Sender) refusedJob(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, ep *store.Endpoint, v limit.Verdict, until time.Time, first bool, log zerolog.Logger) {
	if v.Cause == limit.Concurrency {
		now := time.Now()
		if until.IsZero() {
			if d := s.endpoints.holdFor(ep.ID, s.endpointCap, len(msg.Data())); d > 0 {
				until = now.Add(d)
			}
		}
		if now.Before(until) {
			s.line(ctx, msg, job, ep, until, first, log)
			return
		}
	}
	s.wait(ctx, msg, job, s.refused(ep, v), log)
}

// line puts the job in its endpoint's line until until. The goroutine that
// worked it ends, giving its worker back; the job goes on in a new one,
// taking a worker if one is free and running without otherwise (see
// worker), when it is handed a slot or its wait runs out.
func (s *Sender) line(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, ep *store.Endpoint, until time.Time, first bool, log zerolog.Logger) {
	s.jobs.Add(1)
	w := &waiter{size: len(msg.Data())}
	w.resume = func(h handover) {
		defer s.jobs.Done()
		inFlight.Inc()
		defer inFlight.Dec()
		if !h.handed && s.endpoints.stopping.Load() {
			// The sender stops: give the job back, paced, without asking
			// the limiter for a slot the sender will not use.
			s.wait(ctx, msg, job, s.refused(ep, limit.Verdict{Cause: limit.Concurrency}), log)
			return
		}
		wk := &worker{slots: s.slots}
		wk.reclaim()
		defer wk.release()
		var permit limit.Permit
		var v limit.Verdict
		if h.decided {
			permit, v = h.permit, h.verdict
		} else {
			permit, v = s.admit(ctx, ep, true)
		}
		if v.Allowed {
			handoffs.Inc()
			s.send(ctx, msg, job, ep, permit, log)
			return
		}
		s.refusedJob(ctx, msg, job, ep, v, until, h.handed, log)
	}
	s.endpoints.enqueue(ep.ID, w, time.Until(until), first)
}

// maxPace bounds the wait of a job refused by an endpoint's cap or rate
// limit: past it the job comes back and is refused again, which costs
// little at that spacing. The schedule threshold bounds it too.
const maxPace = 10 * time.Second

// delay is how a job that made no attempt goes back: why (the reason label
// of herald_sender_delayed_total) and after how long.
type delay struct {
	reason string
	wait   time.Duration
	// paced: wait is the job's place in its endpoint's virtual queue, spread
	// already, so it gets no jitter.
	paced bool
	// away: the job leaves the consumer as a message schedule however short
	// the wait, so an unhealthy endpoint's jobs never fill MaxAckPending for
	// everyone else.
	away bool
}

// refused decides what becomes of a job the limits refused. A full cap or
// a spent rate limit frees up soon: the job waits in the consumer for its
// place in the endpoint's virtual queue (see pace). An open breaker's wait
// is the rest of its cool-down (or of its probe), and the job leaves the
// consumer meanwhile.
func (s *Sender) refused(ep *store.Endpoint, v limit.Verdict) delay {
	d := delay{reason: v.Cause.String(), wait: v.RetryIn}
	switch v.Cause {
	case limit.Concurrency:
		// The limiter's hint for a full cap is its worst case (the first
		// lease's expiry): the queue alone decides.
		d.wait, d.paced = s.pace(ep, 0), true
	case limit.Rate:
		d.wait, d.paced = s.pace(ep, v.RetryIn), true
	case limit.Breaker:
		d.away = true
	}
	return d
}

// pace is how long a job refused by the endpoint's cap or rate limit waits
// in JetStream: its place in the endpoint's virtual queue (see
// endpoints.backoff), never less than floor, at most maxPace or the
// schedule threshold.
func (s *Sender) pace(ep *store.Endpoint, floor time.Duration) time.Duration {
	slot := s.endpoints.slotTime(ep.ID, s.endpointCap, ep.RateLimit)
	return s.endpoints.backoff(ep.ID, slot, floor, min(maxPace, s.threshold), s.now())
}

// wait puts back a job that made no attempt, with its count unchanged. A
// short wait (an endpoint's cap or rate limit, an unreadable endpoint) is a
// nak with a delay; a wait that must leave the consumer (a breaker's), or
// any wait longer than the schedule threshold, becomes a message schedule.
func (s *Sender) wait(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, d delay, log zerolog.Logger) {
	delayed.WithLabelValues(d.reason).Inc()
	if !d.paced {
		// Jitter, so jobs refused together do not all return together.
		d.wait += time.Duration(float64(d.wait) * 0.2 * s.rnd())
	}
	if !d.away && d.wait <= s.threshold {
		s.settle(msg.NakWithDelay(d.wait), "nak")
		return
	}
	s.schedule(ctx, msg, job, int(job.PriorAttempts), d.wait, log)
}

// hold hands the job of a paused endpoint to the Holder, then acks it.
func (s *Sender) hold(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, log zerolog.Logger) {
	if s.holder == nil {
		s.wait(ctx, msg, job, delay{reason: reasonPaused, wait: 5 * time.Second}, log)
		return
	}
	if err := s.holder.Hold(ctx, job); err != nil {
		log.Warn().Err(err).Msg("job of a paused endpoint not held; redelivered shortly")
		s.settle(msg.NakWithDelay(time.Second), "nak")
		return
	}
	outcomes.WithLabelValues("held").Inc()
	s.settle(msg.Ack(), "ack")
}

// skip records, without an attempt, that a job's endpoint is disabled: a
// dead letter marked skipped, which recover brings back.
func (s *Sender) skip(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, reason string, log zerolog.Logger) {
	s.deadLetter(ctx, msg, job, nil, reason, true, log)
}

// retryAt is when a schedule published now with delay d fires: schedules
// have a granularity of one second, and never fire early.
func (s *Sender) retryAt(d time.Duration) time.Time {
	at := s.now().Add(d)
	if whole := at.Truncate(time.Second); !whole.Equal(at) {
		at = whole.Add(time.Second)
	}
	return at
}

// schedulePublishFor bounds how long a sender keeps trying to store a
// job's next schedule before it gives the message back.
const schedulePublishFor = 30 * time.Second

// schedule stores the job as a one-shot message schedule that publishes it
// again after d, with done attempts recorded, and only then acks the
// message: a crash in between delivers twice, never zero times. The
// schedule's id is the message's stream position, so the same message
// scheduling again (its ack was lost) stores one schedule.
//
// If the schedule cannot be stored for schedulePublishFor (JetStream is
// away), the message is given back unchanged: its next delivery makes the
// same attempt again, so a receiver may see one attempt number twice, but
// never more attempts than max_attempts plus the outage's repeats, and
// never fewer.
func (s *Sender) schedule(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, done int, d time.Duration, log zerolog.Logger) {
	next := proto.Clone(job).(*heraldv1.DeliveryJob)
	next.PriorAttempts = uint32(done)
	b, err := proto.Marshal(next)
	if err != nil {
		log.Error().Err(err).Msg("job not encodable; terminated")
		s.settle(msg.TermWithReason("job not encodable"), "term")
		return
	}
	// A replayed or resent job shares its id with the original, which may
	// still be waiting: the replay id keeps their schedules apart (RETRIES
	// keeps one message per subject).
	key := job.Id
	if job.ReplayId != "" {
		key += "-" + job.ReplayId
	}
	subject := bus.RetrySubject(key, done)
	pub := &nats.Msg{Subject: subject, Data: b, Header: s.tracer.Inject(ctx, nil)}
	opts := []jetstream.PublishOpt{
		jetstream.WithScheduleAt(s.retryAt(d)),
		jetstream.WithScheduleTarget(bus.DueSubject(job.TenantId, job.EndpointId, key)),
		jetstream.WithScheduleTTL(bus.DueTTL),
		jetstream.WithMsgID(subject + ":" + position(msg)),
		jetstream.WithExpectStream(bus.StreamRetries),
	}
	stop := s.keepAlive(msg, schedulePublishFor)
	err = s.publishPatiently(ctx, pub, opts, schedulePublishFor)
	stop()
	if err != nil {
		log.Error().Err(err).Int("attempts_done", done).Msg("schedule not stored; the message goes back unchanged")
		s.settle(msg.NakWithDelay(min(d, s.threshold)), "nak")
		return
	}
	scheduled.Inc()
	s.settle(msg.Ack(), "ack")
}

// position names msg by its stream and sequence, for the message ids of
// what handling it stores: the same message handled again (its ack was
// lost) stores the same schedule or dead letter once. Jobs come from two
// streams, hence the stream's name.
func position(msg jetstream.Msg) string {
	meta, err := msg.Metadata()
	if err != nil {
		return ""
	}
	return meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
}

// publishPatiently publishes m, trying again with a growing pause while
// JetStream is unavailable, for at most budget.
func (s *Sender) publishPatiently(ctx context.Context, m *nats.Msg, opts []jetstream.PublishOpt, budget time.Duration) error {
	return bus.Retry(ctx, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.js.PublishMsg(pctx, m, opts...)
		return err
	}, bus.RetryFor(budget))
}

// Causes of disabling an endpoint (herald_endpoints_disabled_total).
const (
	disabledGone    = "gone"    // the receiver answered 410
	disabledFailing = "failing" // no success for HERALD_DISABLE_AFTER
)

// disable turns the endpoint off and says so on the ops subject; cause is
// disabledGone or disabledFailing.
func (s *Sender) disable(ctx context.Context, job *heraldv1.DeliveryJob, reason, cause string, log zerolog.Logger) {
	if s.disabler == nil {
		return
	}
	if err := s.disabler.DisableEndpoint(ctx, job.TenantId, job.EndpointId, reason); err != nil {
		log.Error().Err(err).Msg("disable endpoint failed")
		return
	}
	disabledEndpoints.WithLabelValues(cause).Inc()
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
	s.disable(ctx, job, fmt.Sprintf("failing without a success since %s", since.UTC().Format(time.RFC3339)), disabledFailing, log)
}

func (s *Sender) emit(ctx context.Context, job *heraldv1.DeliveryJob, typ, key string, data map[string]any, log zerolog.Logger) {
	if s.ops == nil || ops.IsOps(job.Event.Type) {
		return
	}
	if err := s.ops.Emit(ctx, job.TenantId, typ, key, data); err != nil {
		log.Warn().Err(err).Str("type", typ).Msg("operational event not stored")
	}
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
		rec.RequestHeaders = SentHeaders(req.Header, s.client.UserAgent())
		stop := s.keepAlive(msg, req.Timeout)
		out = s.client.Do(ctx, req)
		stop()
	}
	attempts.WithLabelValues(string(out.Class)).Inc()
	if out.Latency > 0 { // a request was sent
		attemptLatency.Observe(out.Latency.Seconds())
	}
	rec.StatusCode = int32(out.Status)
	rec.LatencyUs = out.Latency.Microseconds()
	rec.ErrorClass = string(out.Class)
	rec.Error = out.Err
	rec.ResponseBody = out.Body
	if bodyGone(err) { // no attempt can succeed without the body
		return rec, Decision{Action: DeadLetter, Reason: out.Err}
	}
	return rec, Decide(out, attempt, ep.MaxAttempts, s.retries, s.rnd, s.retryAfterMax)
}

// keepAlive sends InProgress every third of AckWait while something that
// may outlast it runs (a request, storing a schedule).
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
				s.settle(msg.InProgress(), "in_progress")
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

// deadLetter stores the job in the DLQ and only then acks it, so a job is
// always in exactly one of DELIVERIES or DLQ (or briefly both). A skipped
// job (its endpoint is disabled) is stored the same way, marked, without an
// attempt and without an operational event.
func (s *Sender) deadLetter(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, last *heraldv1.Attempt, reason string, skipped bool, log zerolog.Logger) {
	dl := &heraldv1.DeadLetter{Job: job, Reason: reason, DeadAtUnixMs: s.now().UnixMilli(), Skipped: skipped}
	if last != nil {
		dl.Attempts = []*heraldv1.Attempt{last}
	}
	b, err := proto.Marshal(dl)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = s.js.PublishMsg(pctx, &nats.Msg{Subject: bus.DLQSubject(job.TenantId, job.EndpointId), Data: b, Header: s.tracer.Inject(ctx, nil)},
			jetstream.WithMsgID(fmt.Sprintf("dead:%s:%s:%d:%s", job.Id, job.ReplayId, job.PriorAttempts, position(msg))), jetstream.WithExpectStream(bus.StreamDLQ))
		cancel()
	}
	if err != nil {
		log.Error().Err(err).Msg("dead-letter not stored; job redelivered")
		s.settle(msg.NakWithDelay(5*time.Second), "nak")
		return
	}
	if skipped {
		outcomes.WithLabelValues("skipped").Inc()
		log.Info().Str("reason", reason).Msg("job skipped")
		s.settle(msg.Ack(), "ack")
		return
	}
	outcomes.WithLabelValues("dead_lettered").Inc()
	log.Warn().Str("reason", reason).Msg("job dead-lettered")
	s.settle(msg.Ack(), "ack")
	s.emit(ctx, job, ops.MessageAttemptsExhausted, job.Id+":"+job.ReplayId,
		map[string]any{"event_id": job.Event.Id, "event_type": job.Event.Type, "endpoint_id": job.EndpointId, "reason": reason}, log)
}

// settle counts a failed ack, nak, term or progress report. None is
// retried: JetStream redelivers the message after AckWait, and every
// transition above is safe to repeat.
func (s *Sender) settle(err error, op string) {
	if err != nil {
		settleErrors.WithLabelValues(op).Inc()
		s.log.Debug().Err(err).Str("op", op).Msg("ack or nak not sent")
	}
}
