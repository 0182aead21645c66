package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/trace"
	"github.com/heraldhq/herald/pkg/version"
)

// Tracing is the OpenTelemetry configuration: the standard OTEL_*
// variables Herald reads (settings.go). Tracing is off unless
// OTEL_TRACES_EXPORTER is otlp; the OTLP exporter also reads the other
// OTEL_EXPORTER_OTLP_* variables itself (headers, TLS, timeout,
// compression), as the OpenTelemetry SDK does everywhere.
type Tracing struct {
	// Exporter is OTEL_TRACES_EXPORTER: none (off, Herald's default
	// rather than the specification's otlp, so that a process does not
	// send spans nobody asked for) or otlp.
	Exporter string
	// Protocol is OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf or grpc.
	Protocol string
	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT, the collector's base URL
	// (http/protobuf sends to its /v1/traces); TracesEndpoint,
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, the full URL, wins over it.
	// Both unset: the SDK's default, localhost on 4318 or 4317.
	Endpoint       string
	TracesEndpoint string
	// ServiceName is OTEL_SERVICE_NAME; unset, the binary's name.
	ServiceName string
	// Sampler and SamplerArg are OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG (the ratio of the traceidratio samplers).
	Sampler    string
	SamplerArg string
	// Provider, set in code (tests, programs embedding Herald), receives
	// the spans instead of an exporter built from the settings above.
	Provider oteltrace.TracerProvider
}

// Values of the tracing settings.
const (
	tracesNone   = "none"
	tracesOTLP   = "otlp"
	otlpHTTP     = "http/protobuf"
	otlpGRPC     = "grpc"
	samplerRatio = "traceidratio"
)

// samplers are the OTEL_TRACES_SAMPLER values Herald takes, those of the
// specification that need no extension.
var samplers = map[string]func(ratio float64) sdktrace.Sampler{
	"always_on":                func(float64) sdktrace.Sampler { return sdktrace.AlwaysSample() },
	"always_off":               func(float64) sdktrace.Sampler { return sdktrace.NeverSample() },
	samplerRatio:               sdktrace.TraceIDRatioBased,
	"parentbased_always_on":    func(float64) sdktrace.Sampler { return sdktrace.ParentBased(sdktrace.AlwaysSample()) },
	"parentbased_always_off":   func(float64) sdktrace.Sampler { return sdktrace.ParentBased(sdktrace.NeverSample()) },
	"parentbased_traceidratio": func(r float64) sdktrace.Sampler { return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)) },
}

// check names every tracing setting that cannot work.
func (t Tracing) check() []string {
	var errs []string
	if t.Exporter != tracesNone && t.Exporter != tracesOTLP {
		errs = append(errs, fmt.Sprintf("OTEL_TRACES_EXPORTER=%q: want none or otlp", t.Exporter))
	}
	if t.Protocol != otlpHTTP && t.Protocol != otlpGRPC {
		errs = append(errs, fmt.Sprintf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf or grpc", t.Protocol))
	}
	for _, e := range []struct{ env, v string }{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", t.Endpoint}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", t.TracesEndpoint},
	} {
		if u, err := url.Parse(e.v); e.v != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			errs = append(errs, fmt.Sprintf("%s=%q: want an http:// or https:// URL such as http://otel-collector:4318", e.env, e.v))
		}
	}
	if _, ok := samplers[t.Sampler]; !ok {
		errs = append(errs, fmt.Sprintf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", t.Sampler))
	}
	if _, err := t.ratio(); err != nil {
		errs = append(errs, fmt.Sprintf("OTEL_TRACES_SAMPLER_ARG=%q: %v", t.SamplerArg, err))
	}
	return errs
}

// ratio is the sampling ratio of the traceidratio samplers: 1 unless
// given.
func (t Tracing) ratio() (float64, error) {
	if t.SamplerArg == "" || !strings.HasSuffix(t.Sampler, samplerRatio) {
		return 1, nil
	}
	r, err := strconv.ParseFloat(t.SamplerArg, 64)
	if err != nil || r < 0 || r > 1 {
		return 0, errors.New("want a ratio from 0 to 1")
	}
	return r, nil
}

// serviceName is OTEL_SERVICE_NAME, else the name of the binary that
// runs these roles.
func serviceName(t Tracing, r Roles) string {
	switch {
	case t.ServiceName != "":
		return t.ServiceName
	case r.API && r.Router && r.Sender:
		return "herald"
	case r.API && !r.Router && !r.Sender:
		return "herald-ingest"
	case r.Router && !r.API && !r.Sender:
		return "herald-router"
	case r.Sender && !r.API && !r.Router:
		return "herald-sender"
	}
	return "herald"
}

// openTracer returns the process's tracer and what flushes its spans at
// the end; the nil tracer (off) when the exporter is none and no provider
// was given in code.
func openTracer(ctx context.Context, cfg Config) (*trace.Tracer, func(), error) {
	t := cfg.Tracing
	if t.Provider != nil {
		return trace.New(t.Provider), func() {}, nil
	}
	if t.Exporter != tracesOTLP {
		return nil, func() {}, nil
	}
	exp, err := otlpExporter(ctx, t)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", serviceName(t, cfg.Roles)),
		attribute.String("service.version", version.Version),
	))
	if err != nil {
		return nil, nil, fmt.Errorf("trace resource: %w", err)
	}
	ratio, _ := t.ratio() // checked by Validate
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(samplers[t.Sampler](ratio)))
	return trace.New(tp), func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx) // sends the spans still batched
	}, nil
}

// otlpExporter builds the OTLP exporter over the protocol chosen. Unset
// endpoints are left to the exporter, which reads its environment.
func otlpExporter(ctx context.Context, t Tracing) (sdktrace.SpanExporter, error) {
	if t.Protocol == otlpGRPC {
		var opts []otlptracegrpc.Option
		if ep := cmp.Or(t.TracesEndpoint, t.Endpoint); ep != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(ep))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	var opts []otlptracehttp.Option
	switch {
	case t.TracesEndpoint != "":
		opts = append(opts, otlptracehttp.WithEndpointURL(t.TracesEndpoint))
	case t.Endpoint != "":
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(t.Endpoint, "/")+"/v1/traces"))
	}
	return otlptracehttp.New(ctx, opts...)
}
