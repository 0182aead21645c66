// Package trace carries OpenTelemetry trace context through Herald's
// messages, so that one event's whole path (intake, routing, every attempt
// of every job, its retries and its dead letter) is one trace: each message
// a role publishes carries the W3C trace context of the span that published
// it, in the message's headers, and the role that consumes it continues the
// trace from there.
//
// It knows nothing of NATS or HTTP: headers are the map[string][]string
// both use (nats.Header, http.Header). A nil *Tracer is tracing off: every
// method returns at once, starts nothing and allocates nothing, so the
// roles call it unconditionally.
package trace

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of Herald's spans.
const Name = "github.com/heraldhq/herald"

// Span names: one per step of an event's path.
const (
	// SpanIngest is the API storing an event in EVENTS.
	SpanIngest = "herald.ingest"
	// SpanRoute is a router matching an event and storing its jobs.
	SpanRoute = "herald.route"
	// SpanAttempt is one HTTP attempt of one job, with what followed it
	// (ack, retry schedule or dead letter).
	SpanAttempt = "herald.attempt"
)

// Attribute keys of Herald's spans, named as the log fields are.
const (
	AttrTenantID     = "tenant_id"
	AttrEventID      = "event_id"
	AttrEventType    = "event_type"
	AttrEndpointID   = "endpoint_id"
	AttrJobID        = "job_id"
	AttrAttempt      = "attempt"
	AttrOutcomeClass = "outcome_class"
	AttrJobs         = "jobs"
	AttrDuplicate    = "duplicate"
	// AttrStatusCode is OpenTelemetry's own name for an HTTP response's
	// status code.
	AttrStatusCode = "http.response.status_code"
)

// Tracer starts Herald's spans and moves their context in and out of
// message headers. The nil Tracer is off.
type Tracer struct {
	tracer oteltrace.Tracer
	prop   propagation.TextMapPropagator
}

// New returns a Tracer over tp, propagating W3C trace context (traceparent,
// tracestate). A nil tp is off: New returns nil.
func New(tp oteltrace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{tracer: tp.Tracer(Name), prop: propagation.TraceContext{}}
}

// On reports whether spans are recorded at all.
func (t *Tracer) On() bool { return t != nil }

// Start starts a span as a child of the span in ctx (local or extracted
// from a message). Off, it returns ctx and the span ctx already holds,
// which records nothing. Set attributes only when span.IsRecording(), so
// that building them costs nothing while tracing is off or not sampled.
func (t *Tracer) Start(ctx context.Context, name string, kind oteltrace.SpanKind) (context.Context, oteltrace.Span) {
	if t == nil {
		return ctx, oteltrace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, oteltrace.WithSpanKind(kind))
}

// Extract returns ctx with the remote span context that the headers carry,
// if any; a message without trace headers leaves ctx as it is, so the span
// started next begins a trace. Header names match in any case: producers
// may publish "traceparent" to NATS, net/http canonicalises it to
// "Traceparent".
func (t *Tracer) Extract(ctx context.Context, h map[string][]string) context.Context {
	if t == nil || len(h) == 0 {
		return ctx
	}
	return t.prop.Extract(ctx, carrier(h))
}

// Inject adds the trace context of the span in ctx to h and returns h,
// allocated if nil. Off, or without a valid span in ctx, h is returned as
// it is: a message published while tracing is off gets no header map.
func (t *Tracer) Inject(ctx context.Context, h map[string][]string) map[string][]string {
	if t == nil {
		return h
	}
	return Inject(ctx, h)
}

// Inject is Tracer.Inject for code that holds no Tracer but passes a trace
// on (a job held for a paused endpoint): while tracing is off no span is
// ever extracted or started, so ctx has none and h is returned as it is.
func Inject(ctx context.Context, h map[string][]string) map[string][]string {
	if !oteltrace.SpanContextFromContext(ctx).IsValid() {
		return h
	}
	if h == nil {
		h = make(map[string][]string, 2)
	}
	propagation.TraceContext{}.Inject(ctx, carrier(h))
	return h
}

// Carry returns the trace headers of a stored message, for the message
// that moves it elsewhere (a held job released to DELIVERIES), so that the
// trace goes on; nil when it has none.
func Carry(from map[string][]string) map[string][]string {
	var h map[string][]string
	for _, name := range (propagation.TraceContext{}).Fields() {
		if v := carrier(from).Get(name); v != "" {
			if h == nil {
				h = make(map[string][]string, 2)
			}
			h[name] = []string{v}
		}
	}
	return h
}

// carrier reads and writes trace headers in a header map. It writes the
// lower-case names W3C Trace Context gives, which NATS keeps as they are;
// it reads a name in any case.
type carrier map[string][]string

func (c carrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c carrier) Set(key, value string) {
	for k := range c { // one name, whatever its case: a republished header replaces the old one
		if k != key && strings.EqualFold(k, key) {
			delete(c, k)
		}
	}
	c[key] = []string{value}
}

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
