package trace_test

import (
	"context"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/trace"
)

// Off, the tracer costs nothing: no span, no header map, no allocation.
func TestOffCostsNothing(t *testing.T) {
	var tr *trace.Tracer // what the roles hold when OTEL_TRACES_EXPORTER is none
	if tr.On() {
		t.Fatal("the nil tracer is on")
	}
	ctx := context.Background()
	hdr := map[string][]string{"Herald-Encoding": {"proto"}}
	allocs := testing.AllocsPerRun(100, func() {
		c := tr.Extract(ctx, hdr)
		c, span := tr.Start(c, trace.SpanAttempt, oteltrace.SpanKindClient)
		if span.IsRecording() {
			t.Fatal("a span records while tracing is off")
		}
		if h := tr.Inject(c, nil); h != nil {
			t.Fatalf("Inject allocated a header map while off: %v", h)
		}
		span.End()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message while off, want 0", allocs)
	}
}

// A span's context survives a trip through message headers in any case:
// lower-case as Herald writes them and NATS keeps them, canonical as
// net/http makes them.
func TestHeadersCarryTheSpan(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	tr := trace.New(tp)
	ctx, span := tr.Start(context.Background(), trace.SpanRoute, oteltrace.SpanKindConsumer)
	defer span.End()

	h := tr.Inject(ctx, nil)
	if len(h["traceparent"]) != 1 {
		t.Fatalf("headers %v: want a lower-case traceparent", h)
	}
	if got := oteltrace.SpanContextFromContext(tr.Extract(context.Background(), h)); got.SpanID() != span.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("extracted %v, want the remote span %v", got, span.SpanContext())
	}
	canon := http.Header{}
	canon.Set("traceparent", h["traceparent"][0])
	if got := oteltrace.SpanContextFromContext(tr.Extract(context.Background(), canon)); got.TraceID() != span.SpanContext().TraceID() {
		t.Errorf("from %v: extracted %v", canon, got)
	}

	// A header republished replaces the old one, whatever its case.
	_, next := tr.Start(ctx, trace.SpanAttempt, oteltrace.SpanKindClient)
	defer next.End()
	canon = tr.Inject(oteltrace.ContextWithSpan(context.Background(), next), canon)
	if len(canon) != 1 || len(canon["traceparent"]) != 1 {
		t.Errorf("headers after a second inject: %v", canon)
	}

	// Nothing to carry: the headers stay as they are.
	if h := tr.Inject(context.Background(), nil); h != nil {
		t.Errorf("Inject without a span: %v", h)
	}
	if trace.New(nil) != nil {
		t.Error("New(nil) is on")
	}
}

// Carry copies a stored message's trace headers, and nothing else, to the
// message that moves it; a message without them gives none.
func TestCarry(t *testing.T) {
	tr := trace.New(sdktrace.NewTracerProvider())
	ctx, span := tr.Start(context.Background(), trace.SpanAttempt, oteltrace.SpanKindClient)
	defer span.End()
	held := trace.Inject(ctx, map[string][]string{"Nats-Msg-Id": {"x"}})
	moved := trace.Carry(held)
	if len(moved) != 1 || moved["traceparent"][0] != held["traceparent"][0] {
		t.Errorf("carried %v from %v", moved, held)
	}
	if got := trace.Carry(map[string][]string{"Nats-Msg-Id": {"x"}}); got != nil {
		t.Errorf("carried %v from a message without trace headers", got)
	}
	if got := trace.Inject(context.Background(), nil); got != nil {
		t.Errorf("Inject without a span: %v", got)
	}
}

// What tracing costs one message's hop (extract, a span, inject), off and
// on (spans recorded and dropped: no exporter).
func BenchmarkHop(b *testing.B) {
	for _, c := range []struct {
		name string
		tr   *trace.Tracer
	}{{"off", nil}, {"on", trace.New(sdktrace.NewTracerProvider())}} {
		b.Run(c.name, func(b *testing.B) {
			ctx, span := c.tr.Start(context.Background(), trace.SpanRoute, oteltrace.SpanKindConsumer)
			in := c.tr.Inject(ctx, map[string][]string{"Herald-Encoding": {"proto"}})
			span.End()
			b.ReportAllocs()
			for b.Loop() {
				ctx, span := c.tr.Start(c.tr.Extract(context.Background(), in), trace.SpanAttempt, oteltrace.SpanKindClient)
				_ = c.tr.Inject(ctx, nil)
				span.End()
			}
		})
	}
}
