// Package router turns stored events into delivery jobs: one job per
// (event, matching endpoint), published to DELIVERIES with a stable id, and
// the event acked only after every job is stored.
package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/ops"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/trace"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

var (
	eventsRouted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_router_events_total",
		Help: "Events handled by the router, by result: routed, unmatched, invalid, retried, rerouted (routed again after DELIVERIES was lost).",
	}, []string{"result"})
	jobsPublished = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_router_jobs_total",
		Help: "Delivery jobs stored by the router (duplicates excluded).",
	})
)

// The results exist from the start, at 0, so that rate() and increase()
// see the first of each.
func init() {
	for _, r := range []string{"routed", "unmatched", "invalid", "retried", "rerouted"} {
		eventsRouted.WithLabelValues(r)
	}
}

// Endpoints is what the router needs of the endpoint cache.
type Endpoints interface {
	Endpoints(ctx context.Context, tenant string) ([]store.Endpoint, error)
	// Current returns once the endpoints served reflect every change
	// stored before the call (*cache.Cache waits for its change watch), or
	// an error when that cannot be known. An event is stored after the
	// changes that preceded it, so routing it after Current never uses
	// endpoints older than the event: one sent right after its endpoint
	// was created reaches it.
	Current(ctx context.Context) error
}

// Payloads is what the router needs of the payload store (package
// payload): checking bodies producers stored themselves, and counting the
// jobs that need a stored body.
type Payloads interface {
	Resolve(ctx context.Context, tenant, key string) (*heraldv1.PayloadRef, error)
	Hold(ctx context.Context, ref *heraldv1.PayloadRef, jobs int) error
}

// Router consumes EVENTS and publishes delivery jobs.
type Router struct {
	js       jetstream.JetStream
	eps      Endpoints
	payloads Payloads
	tracer   *trace.Tracer
	log      zerolog.Logger
	workers  int
	now      func() time.Time
	ackWait  time.Duration
	ready    chan struct{}
	once     sync.Once
	floors   floors // recent ack floors, for Reroute
	decoded  *Decoded

	// beforeAck, in tests, runs after an event's jobs are stored and before
	// the event is acked: the window a crash test aims at.
	beforeAck func(*heraldv1.Event)
}

// Option configures a Router.
type Option func(*Router)

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(r *Router) { r.log = l } }

// WithWorkers sets how many events are routed concurrently.
func WithWorkers(n int) Option { return func(r *Router) { r.workers = n } }

// WithAckWait sets how long an event taken by a router that died stays
// invisible before another router gets it.
func WithAckWait(d time.Duration) Option { return func(r *Router) { r.ackWait = d } }

// WithPayloads sets the payload store: events whose body is stored there
// (payload_ref) have their jobs counted, so the body is removed after the
// last one; producers' references (Herald-Payload-Ref) are checked.
func WithPayloads(p Payloads) Option { return func(r *Router) { r.payloads = p } }

// WithTracer records a span per event routed, continuing the trace its
// message carries (ingest's, or a producer's traceparent on NATS) or
// starting one, and carries its context in every job's headers to the
// senders (package trace).
func WithTracer(t *trace.Tracer) Option { return func(r *Router) { r.tracer = t } }

// WithDecoded shares decoded producers' events with the history
// projection of this process (see Decoded).
func WithDecoded(d *Decoded) Option { return func(r *Router) { r.decoded = d } }

// DefaultWorkers is how many events one router process routes at once
// (HERALD_ROUTER_WORKERS).
const DefaultWorkers = 64

// New returns a Router.
func New(js jetstream.JetStream, eps Endpoints, opts ...Option) *Router {
	r := &Router{js: js, eps: eps, log: zerolog.Nop(), workers: DefaultWorkers, now: time.Now, ready: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Ready is closed once the router consumes.
func (r *Router) Ready() <-chan struct{} { return r.ready }

// Run routes events until ctx ends. Events being routed when ctx ends are
// finished and acked, so a graceful stop loses nothing and redelivers nothing.
// A lost consumer or connection is recreated after a pause. It returns an
// error only when ctx ended while the consumer was failing (bus.Consume).
func (r *Router) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, r.workers)
	wg.Add(1)
	go func() { defer wg.Done(); r.trackFloor(ctx) }()
	return bus.Consume(ctx, r.log, "router", func(ctx context.Context) error { return r.consume(ctx, sem, &wg) })
}

func (r *Router) consume(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) error {
	cons, err := bus.RouterConsumer(ctx, r.js, r.ackWait)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2*r.workers), jetstream.PullHeartbeat(5*time.Second))
	if err != nil {
		return fmt.Errorf("router messages: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	r.once.Do(func() { close(r.ready) })
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return nil
			}
			return err
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Routing outlives ctx so that an event taken is finished.
			r.handle(context.WithoutCancel(ctx), msg)
		}()
	}
}

func (r *Router) handle(ctx context.Context, msg jetstream.Msg) {
	ctx, span := r.tracer.Start(r.tracer.Extract(ctx, msg.Headers()), trace.SpanRoute, oteltrace.SpanKindConsumer)
	defer span.End()
	ev, seq, err := r.prepare(ctx, msg)
	if span.IsRecording() && ev != nil {
		span.SetAttributes(attribute.String(trace.AttrTenantID, ev.TenantId), attribute.String(trace.AttrEventID, ev.Id),
			attribute.String(trace.AttrEventType, ev.Type))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	var later *retryLater
	switch {
	case errors.As(err, &later):
		eventsRouted.WithLabelValues("retried").Inc()
		r.log.Warn().Err(err).Str("event_id", ev.GetId()).Str("tenant_id", ev.GetTenantId()).Msg("event body not readable; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	case err != nil:
		eventsRouted.WithLabelValues("invalid").Inc()
		r.log.Warn().Err(err).Str("subject", msg.Subject()).Msg("invalid event dropped")
		_ = msg.TermWithReason("invalid event")
		return
	}
	n, err := r.route(ctx, ev, seq)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int(trace.AttrJobs, n))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		eventsRouted.WithLabelValues("retried").Inc()
		r.log.Warn().Err(err).Str("event_id", ev.Id).Str("tenant_id", ev.TenantId).Msg("routing failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if n == 0 {
		eventsRouted.WithLabelValues("unmatched").Inc()
	} else {
		eventsRouted.WithLabelValues("routed").Inc()
	}
	if r.beforeAck != nil {
		r.beforeAck(ev)
	}
	// Every job is stored: only now may the event go.
	if err := msg.Ack(); err != nil {
		r.log.Warn().Err(err).Str("event_id", ev.Id).Msg("ack failed; the event will be routed again and its jobs deduplicated")
	}
}

// retryLater marks a failure that may pass (a stored body not readable
// yet): the event is routed again later, not dropped.
type retryLater struct{ err error }

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// prepare decodes a stored event and checks a producer's stored body, and
// returns the event with its position in EVENTS. An error is permanent
// (the event is invalid) unless it is a *retryLater.
func (r *Router) prepare(ctx context.Context, msg jetstream.Msg) (*heraldv1.Event, uint64, error) {
	var seq uint64
	if meta, err := msg.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	ev, err := r.decode(msg)
	if err == nil && ev.PayloadRef != nil && ev.PayloadRef.Size == 0 && r.payloads != nil {
		// A producer's body in the payload store: check it once, here.
		var ref *heraldv1.PayloadRef
		if ref, err = r.payloads.Resolve(ctx, ev.TenantId, ev.PayloadRef.Key); err == nil {
			ev.PayloadRef = ref
		} else if !payload.Permanent(err) {
			return ev, seq, &retryLater{err}
		}
	}
	return ev, seq, err
}

// decode reads an event as Herald stored it (protobuf) or as a producer
// published it straight to NATS (JSON). For the latter the tenant and type
// come from the subject, and the id from the body, Nats-Msg-Id, or the
// stored position, in that order.
func (r *Router) decode(msg jetstream.Msg) (*heraldv1.Event, error) {
	if msg.Headers().Get(bus.HeaderEncoding) == bus.EncodingProto {
		ev := &heraldv1.Event{}
		if err := proto.Unmarshal(msg.Data(), ev); err != nil {
			return nil, fmt.Errorf("decode event: %w", err)
		}
		return ev, nil
	}
	return r.decoded.FromNATS(msg)
}

// FromNATS builds an event from a producer's JSON published on
// herald.events.<tenant>.<type>.
//
// A body too large for a NATS message is stored by the producer in the
// object store bucket herald-payloads under a key starting with
// "<tenant>/", and the event names it in the Herald-Payload-Ref header
// instead of carrying "data". The event then has a PayloadRef with that key
// (and no size yet: the router checks the object before routing).
func FromNATS(msg jetstream.Msg) (*heraldv1.Event, error) {
	tenant, typ, ok := bus.ParseEventSubject(msg.Subject())
	if !ok || !event.IsToken(tenant) {
		return nil, fmt.Errorf("subject %q is not herald.events.<tenant>.<type>", msg.Subject())
	}
	in, err := event.Decode(msg.Data())
	if err != nil {
		return nil, err
	}
	if in.Type == "" {
		in.Type = typ // the subject names the type; the body may leave it out
	}
	check := in
	key := msg.Headers().Get(bus.HeaderPayloadRef)
	if key != "" {
		if len(in.Data) != 0 {
			return nil, fmt.Errorf("an event with a %s header must leave out \"data\"", bus.HeaderPayloadRef)
		}
		if !strings.HasPrefix(key, tenant+"/") || key == tenant+"/" {
			return nil, fmt.Errorf("%s %q is not a key under %q", bus.HeaderPayloadRef, key, tenant+"/")
		}
		check.Data = json.RawMessage("0") // the body is checked where it is stored
	}
	if err := check.Validate(); err != nil {
		return nil, err
	}
	if in.Type != typ {
		return nil, fmt.Errorf("type %q in the body differs from %q in the subject", in.Type, typ)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return nil, fmt.Errorf("event metadata: %w", err)
	}
	id := in.ID
	if id == "" {
		id = msg.Headers().Get(nats.MsgIdHdr)
		if event.ValidateID(id) != nil {
			id = event.DerivedID(meta.Stream, meta.Sequence.Stream, meta.Timestamp.UnixNano())
		}
	}
	ev := &heraldv1.Event{
		Id:               id,
		TenantId:         tenant,
		Type:             typ,
		Data:             in.Data,
		EndpointId:       in.EndpointID,
		AcceptedAtUnixMs: meta.Timestamp.UnixMilli(),
	}
	if key != "" {
		ev.PayloadRef = &heraldv1.PayloadRef{Bucket: bus.PayloadBucket, Key: key}
	}
	return ev, nil
}

// route publishes one job per matching endpoint and waits until JetStream
// stored each. It returns how many endpoints matched.
func (r *Router) route(ctx context.Context, ev *heraldv1.Event, seq uint64) (int, error) {
	if err := r.eps.Current(ctx); err != nil {
		return 0, fmt.Errorf("endpoint changes not yet seen: %w", err)
	}
	eps, err := r.eps.Endpoints(ctx, ev.TenantId)
	if err != nil {
		return 0, fmt.Errorf("endpoints of %s: %w", ev.TenantId, err)
	}
	var matched []*store.Endpoint
	for i := range eps {
		if Matches(&eps[i], ev) {
			matched = append(matched, &eps[i])
		}
	}
	if ev.PayloadRef != nil && r.payloads != nil {
		// Counted before any job exists, so no job can finish first; no
		// job at all removes the body now.
		if err := r.payloads.Hold(ctx, ev.PayloadRef, len(matched)); err != nil {
			return 0, fmt.Errorf("count jobs of the event body: %w", err)
		}
	}
	var futures []jetstream.PubAckFuture
	now := r.now().UnixMilli()
	for _, ep := range matched {
		job := &heraldv1.DeliveryJob{
			Id:              event.JobID(ev.TenantId, ev.Id, ep.ID),
			TenantId:        ev.TenantId,
			EndpointId:      ep.ID,
			Event:           ev,
			CreatedAtUnixMs: now,
			EventSeq:        seq,
		}
		b, err := proto.Marshal(job)
		if err != nil {
			return 0, fmt.Errorf("encode job: %w", err)
		}
		f, err := r.js.PublishMsgAsync(&nats.Msg{Subject: bus.DeliverySubject(ev.TenantId, ep.ID), Data: b, Header: r.tracer.Inject(ctx, nil)},
			jetstream.WithMsgID(job.Id), jetstream.WithExpectStream(bus.StreamDeliveries), jetstream.WithStallWait(5*time.Second))
		if err != nil {
			return 0, fmt.Errorf("publish job: %w", err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if !ack.Duplicate {
				jobsPublished.Inc()
			}
		case err := <-f.Err():
			return 0, fmt.Errorf("store job: %w", err)
		case <-timeout.C:
			return 0, errors.New("store job: timed out waiting for JetStream")
		}
	}
	return len(futures), nil
}

// Matches reports whether ep should receive ev: the event names it, or
// names no endpoint and ep subscribes to its type. A disabled endpoint
// matches too: its job is recorded by the sender as skipped, so the
// event's status says so and recover brings it back once it is enabled.
//
// Herald's own operational events (ops.IsOps) reach only endpoints that
// name their type exactly: "*" and "prefix.*" never match them. Otherwise
// an endpoint subscribed to everything got, on failing, events about its
// own failures, and every catch-all receiver got types it never asked for.
func Matches(ep *store.Endpoint, ev *heraldv1.Event) bool {
	if ev.EndpointId != "" {
		return ev.EndpointId == ep.ID
	}
	if ops.IsOps(ev.Type) {
		return slices.Contains(ep.Events, ev.Type)
	}
	return ep.Subscribes(ev.Type)
}
