// Package ingest turns a validated producer event into a stored JetStream
// message. Publish returns only after JetStream has stored the event, so a
// caller that answers 202 after it has made the event durable.
package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/trace"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

var accepted = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_ingest_events_total",
	Help: "Events accepted by ingest, by result: stored or duplicate.",
}, []string{"result"})

// The results exist from the start, at 0, so that rate() and increase()
// see the first of each.
func init() {
	accepted.WithLabelValues("stored")
	accepted.WithLabelValues("duplicate")
}

// Payloads stores event bodies above the inline threshold out of the
// message path (package payload).
type Payloads interface {
	InlineBytes() int
	Put(ctx context.Context, tenant string, data []byte) (*heraldv1.PayloadRef, error)
	Delete(ctx context.Context, ref *heraldv1.PayloadRef) error
}

// Publisher stores events in the EVENTS stream.
type Publisher struct {
	js       jetstream.JetStream
	payloads Payloads
	tracer   *trace.Tracer
	now      func() time.Time
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithPayloads stores event data larger than the payload store's inline
// threshold in the payload store; the event carries a reference to it.
// Without it, every event travels inline (and must fit in one NATS
// message).
func WithPayloads(p Payloads) Option { return func(pub *Publisher) { pub.payloads = p } }

// WithTracer records a span per event stored, and carries its context in
// the event's headers to the router (package trace). The span is a child
// of the one in Publish's ctx, such as the producer's, which the API
// extracts from the request's traceparent.
func WithTracer(t *trace.Tracer) Option { return func(pub *Publisher) { pub.tracer = t } }

// New returns a Publisher.
func New(js jetstream.JetStream, opts ...Option) *Publisher {
	p := &Publisher{js: js, now: time.Now}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Result says what happened to a published event.
type Result struct {
	ID string
	// Duplicate is true when an event with the same id was already stored
	// within the duplicate window; nothing new was stored.
	Duplicate bool
}

// Publish validates in and stores it for tenant. The event id is the
// producer's, or a new one. The JetStream dedupe key is scoped by tenant, so
// two tenants may use the same idempotency key.
//
// Data above the inline threshold is stored in the payload store first and
// the event refers to it. If the event is then not stored, or was a
// duplicate (the stored copy has its own body), the body is deleted again:
// a failed Publish leaves nothing behind.
func (p *Publisher) Publish(ctx context.Context, tenant string, in event.Input) (res Result, err error) {
	if err := in.Validate(); err != nil {
		return Result{}, err
	}
	id := in.ID
	if id == "" {
		id = event.NewID("evt")
	}
	ctx, span := p.tracer.Start(ctx, trace.SpanIngest, oteltrace.SpanKindProducer)
	if span.IsRecording() {
		span.SetAttributes(attribute.String(trace.AttrTenantID, tenant), attribute.String(trace.AttrEventID, id),
			attribute.String(trace.AttrEventType, in.Type))
		defer func() {
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			} else {
				span.SetAttributes(attribute.Bool(trace.AttrDuplicate, res.Duplicate))
			}
			span.End()
		}()
	}
	ev := &heraldv1.Event{
		Id:               id,
		TenantId:         tenant,
		Type:             in.Type,
		Data:             in.Data,
		EndpointId:       in.EndpointID,
		AcceptedAtUnixMs: p.now().UnixMilli(),
	}
	if p.payloads != nil && len(in.Data) > p.payloads.InlineBytes() {
		ref, err := p.payloads.Put(ctx, tenant, in.Data)
		if err != nil {
			return Result{}, err
		}
		ev.Data, ev.PayloadRef = nil, ref
	}
	b, err := proto.Marshal(ev)
	if err != nil {
		p.dropPayload(ctx, ev)
		return Result{}, fmt.Errorf("encode event: %w", err)
	}
	msg := &nats.Msg{Subject: bus.EventSubject(tenant, in.Type), Data: b, Header: nats.Header{}}
	msg.Header.Set(bus.HeaderEncoding, bus.EncodingProto)
	p.tracer.Inject(ctx, msg.Header)
	ack, err := p.publish(ctx, msg, tenant+"/"+id, ev.PayloadRef != nil)
	if err != nil {
		p.dropPayload(ctx, ev)
		return Result{}, fmt.Errorf("store event: %w", err)
	}
	if ack.Duplicate {
		p.dropPayload(ctx, ev)
	}
	if ack.Duplicate {
		accepted.WithLabelValues("duplicate").Inc()
	} else {
		accepted.WithLabelValues("stored").Inc()
	}
	return Result{ID: id, Duplicate: ack.Duplicate}, nil
}

// publish stores msg. An event whose body is already in the payload store
// is retried a few times on errors that may pass (with the same Msg-Id, so
// a publish that was stored but not acknowledged is answered as a
// duplicate), since giving up means deleting the body again.
func (p *Publisher) publish(ctx context.Context, msg *nats.Msg, msgID string, retry bool) (*jetstream.PubAck, error) {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(bus.StreamEvents))
		if err == nil || !retry || attempt == 3 || ctx.Err() != nil || !bus.IsRetryable(err) {
			return ack, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// dropPayload deletes the body of an event that was not stored, even if
// the request was canceled meanwhile.
func (p *Publisher) dropPayload(ctx context.Context, ev *heraldv1.Event) {
	if ev.PayloadRef == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = p.payloads.Delete(dctx, ev.PayloadRef) // if this fails too, the bucket's TTL removes it
}
