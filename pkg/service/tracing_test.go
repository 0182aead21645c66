package service_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/trace"
)

// One event whose receiver fails its first attempt is one trace, from the
// producer's own span through ingest, the router and both attempts, the
// second reached through the retry schedule in RETRIES. An event a
// producer publishes to NATS without trace headers starts its trace at the
// router. Real NATS, real Redis, the roles in process, spans in the SDK's
// in-memory exporter.
func TestTraceOfAnEventWithARetry(t *testing.T) {
	natsURL := testenv.NATS(t)
	redisURL, prefix := testenv.Redis(t)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	rcv := newFlaky(t, true, 0) // 500 to each event's first request, 204 after
	schedule, _ := retry.Parse("1s")
	info := runInfo(t, service.Config{
		Roles:   service.Roles{API: true, Router: true, Sender: true},
		NATSURL: natsURL, RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		AdminToken: testAdmin, Schedule: schedule, EgressAllowPrivate: true, LogLevel: "warn",
		EncryptionKey: testEncryptionKey,
		Tracing:       service.Tracing{Provider: tp},
	})
	if !info.Redis {
		t.Fatal("Herald runs without Redis")
	}
	base := "http://" + info.HTTPAddr
	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "traced"})
	tenant, key := tn["id"].(string), tn["api_key"].(string)
	ep := mustCall(t, 201, "POST", base+"/v1/endpoints", key, map[string]any{"name": "flaky", "url": rcv.URL, "events": []string{"post.*"}})
	endpoint := ep["id"].(string)

	t.Run("http", func(t *testing.T) {
		// The producer's span: Herald's trace continues it.
		const producerTrace, producerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		req, _ := http.NewRequest("POST", base+"/v1/events", bytes.NewReader([]byte(`{"type":"post.published","id":"traced-1","data":{}}`)))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", "00-"+producerTrace+"-"+producerSpan+"-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /v1/events: %d", resp.StatusCode)
		}
		tid, _ := oteltrace.TraceIDFromHex(producerTrace)
		var got map[string][]sdktrace.ReadOnlySpan
		testenv.Eventually(t, 20*time.Second, func() bool {
			got = byName(spans.GetSpans().Snapshots(), tid)
			return len(got[trace.SpanAttempt]) >= 2
		}, "two attempt spans in trace %s", producerTrace)
		for name, want := range map[string]int{trace.SpanIngest: 1, trace.SpanRoute: 1, trace.SpanAttempt: 2} {
			if len(got[name]) != want {
				t.Errorf("%d %s spans in the trace, want %d", len(got[name]), name, want)
			}
		}
		if len(got) != 3 {
			t.Errorf("span names in the trace: %v, want only ingest, route and attempt", names(got))
		}
		if t.Failed() {
			t.FailNow()
		}
		ingest, route := got[trace.SpanIngest][0], got[trace.SpanRoute][0]
		first, second := got[trace.SpanAttempt][0], got[trace.SpanAttempt][1]
		if attr(first, trace.AttrAttempt).AsInt64() == 2 {
			first, second = second, first
		}
		parent(t, ingest, producerSpan)
		parent(t, route, ingest.SpanContext().SpanID().String())
		parent(t, first, route.SpanContext().SpanID().String())
		// The retry's schedule in RETRIES carried the first attempt's span.
		parent(t, second, first.SpanContext().SpanID().String())
		for _, c := range []struct {
			span    sdktrace.ReadOnlySpan
			attempt int64
			status  int64
			class   string
		}{{first, 1, 500, "server_error"}, {second, 2, 204, "none"}} {
			for k, want := range map[string]any{
				trace.AttrTenantID: tenant, trace.AttrEndpointID: endpoint, trace.AttrEventID: "traced-1",
				trace.AttrAttempt: c.attempt, trace.AttrStatusCode: c.status, trace.AttrOutcomeClass: c.class,
			} {
				if got := attr(c.span, k).AsInterface(); got != want {
					t.Errorf("attempt %d: %s = %v, want %v", c.attempt, k, got, want)
				}
			}
		}
		if attr(ingest, trace.AttrEventID).AsString() != "traced-1" || attr(route, trace.AttrJobs).AsInt64() != 1 {
			t.Errorf("ingest span %v, route span %v", ingest.Attributes(), route.Attributes())
		}
	})

	t.Run("held", func(t *testing.T) {
		// A job of a paused endpoint waits in HELD with its trace, and
		// goes on in it once the endpoint is resumed.
		mustCall(t, 200, "PATCH", base+"/v1/endpoints/"+endpoint, key, map[string]any{"paused": true})
		heldBefore := metric(t, base, `herald_hold_jobs_total{result="held"}`)
		mustCall(t, 202, "POST", base+"/v1/events", key, map[string]any{"type": "post.published", "id": "traced-3", "data": map[string]any{}})
		testenv.Eventually(t, 20*time.Second, func() bool {
			return metric(t, base, `herald_hold_jobs_total{result="held"}`) != heldBefore
		}, "the job of the paused endpoint held")
		mustCall(t, 200, "PATCH", base+"/v1/endpoints/"+endpoint, key, map[string]any{"paused": false})
		var got map[string][]sdktrace.ReadOnlySpan
		testenv.Eventually(t, 20*time.Second, func() bool {
			for _, s := range spans.GetSpans().Snapshots() {
				if s.Name() == trace.SpanIngest && attr(s, trace.AttrEventID).AsString() == "traced-3" {
					got = byName(spans.GetSpans().Snapshots(), s.SpanContext().TraceID())
					return len(got[trace.SpanAttempt]) >= 2
				}
			}
			return false
		}, "two attempt spans of the held event in its trace")
		if len(got[trace.SpanRoute]) != 1 || len(got[trace.SpanAttempt]) != 2 {
			t.Fatalf("spans of the trace: %v, want one route and two attempts", names(got))
		}
		first := got[trace.SpanAttempt][0]
		if attr(first, trace.AttrAttempt).AsInt64() != 1 {
			first = got[trace.SpanAttempt][1]
		}
		parent(t, first, got[trace.SpanRoute][0].SpanContext().SpanID().String())
	})

	t.Run("nats", func(t *testing.T) {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m := nats.NewMsg("herald.events." + tenant + ".post.published")
		m.Data = []byte(`{"id":"traced-2","data":{}}`)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		var route sdktrace.ReadOnlySpan
		var got map[string][]sdktrace.ReadOnlySpan
		testenv.Eventually(t, 20*time.Second, func() bool {
			all := spans.GetSpans().Snapshots()
			for _, s := range all {
				if s.Name() == trace.SpanRoute && attr(s, trace.AttrEventID).AsString() == "traced-2" {
					route = s
				}
			}
			if route == nil {
				return false
			}
			got = byName(all, route.SpanContext().TraceID())
			return len(got[trace.SpanAttempt]) >= 2
		}, "the route span and two attempt spans of an event published to NATS")
		if route.Parent().IsValid() {
			t.Errorf("the router's span has parent %s; an event without trace headers starts a trace", route.Parent().SpanID())
		}
		if len(got[trace.SpanIngest]) != 0 || len(got[trace.SpanRoute]) != 1 || len(got[trace.SpanAttempt]) != 2 {
			t.Errorf("spans of the trace: %v, want one route and two attempts", names(got))
		}
	})
}

// byName groups the spans of one trace by name.
func byName(spans []sdktrace.ReadOnlySpan, tid oteltrace.TraceID) map[string][]sdktrace.ReadOnlySpan {
	out := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanContext().TraceID() == tid {
			out[s.Name()] = append(out[s.Name()], s)
		}
	}
	return out
}

func names(m map[string][]sdktrace.ReadOnlySpan) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

func parent(t *testing.T, s sdktrace.ReadOnlySpan, want string) {
	t.Helper()
	if got := s.Parent().SpanID().String(); got != want {
		t.Errorf("%s span's parent %s, want %s", s.Name(), got, want)
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// With OTEL_TRACES_EXPORTER=otlp, Herald sends its spans over OTLP
// (http/protobuf) to OTEL_EXPORTER_OTLP_ENDPOINT's /v1/traces, named by
// the binary it runs as.
func TestTracesExportedOverOTLP(t *testing.T) {
	got := make(chan *collectortrace.ExportTraceServiceRequest, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(b, req) != nil {
			t.Errorf("collector got %s %s (%s), not an OTLP trace export", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		select {
		case got <- req:
		default: // the test has what it needs; later batches (at the stop) are dropped
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)                 // after Herald stopped: it sends what it holds as it stops
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // ms: the SDK's batch delay, 5 s by default
	redisURL, prefix := testenv.Redis(t)
	info := runInfo(t, service.Config{
		Roles:   service.Roles{API: true, Router: true, Sender: true},
		NATSURL: testenv.NATS(t), RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		AdminToken: testAdmin, EncryptionKey: testEncryptionKey, LogLevel: "warn",
		Tracing: service.Tracing{Exporter: "otlp", Endpoint: collector.URL},
	})
	base := "http://" + info.HTTPAddr
	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "exported"})
	mustCall(t, 202, "POST", base+"/v1/events", tn["api_key"].(string), map[string]any{"type": "post.published", "id": "exported-1", "data": map[string]any{}})

	deadline := time.After(20 * time.Second)
	for {
		select {
		case req := <-got:
			for _, rs := range req.ResourceSpans {
				service := ""
				for _, a := range rs.Resource.GetAttributes() {
					if a.Key == "service.name" {
						service = a.Value.GetStringValue()
					}
				}
				for _, ss := range rs.ScopeSpans {
					for _, s := range ss.Spans {
						if s.Name == trace.SpanIngest {
							if service != "herald" {
								t.Errorf("service.name %q, want herald (the all-in-one's binary)", service)
							}
							return
						}
					}
				}
			}
		case <-deadline:
			t.Fatal("no herald.ingest span reached the collector within 20 s")
		}
	}
}
