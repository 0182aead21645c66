// Command loadgen puts a bounded load of events on any Herald deployment:
// POST /v1/events (default), straight to NATS, or, as a baseline, signed
// webhooks straight to a receiver. Open loop at --rate events/s, or closed
// loop (--rate 0) as fast as accepted; it stops at --count events or after
// --duration, whichever comes first.
//
//	loadgen --target http://127.0.0.1:8080 --api-key hk_... --rate 1000 --duration 10s
//	loadgen --via nats --nats-url nats://127.0.0.1:4333 --tenant tn_... --api-key hk_... --count 10000
//	loadgen --via direct --target http://127.0.0.1:9000/hook --secret whsec_... --duration 5s
//
// The summary goes to stdout as JSON; --out writes one line per event (id,
// status, the producer's accepted time) for reconciling with a sink.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/services/bench/internal/bench"
	"github.com/heraldhq/herald/services/internal/benchcmd"
)

func main() {
	var (
		target   = flag.String("target", "http://127.0.0.1:8080", "Herald's base URL (http), or the webhook URL (direct)")
		via      = flag.String("via", "http", "http (POST /v1/events), nats (publish to JetStream) or direct (signed webhooks to --target)")
		apiKeys  = flag.String("api-key", os.Getenv("HERALD_API_KEY"), "tenant API key(s), comma-separated: events are spread over them (http); for nats, one per --tenant, in the same order: the NATS token")
		tenants  = flag.String("tenant", "", "tenant id(s), comma-separated (nats)")
		natsURL  = flag.String("nats-url", "nats://127.0.0.1:4333", "NATS URL (nats)")
		secret   = flag.String("secret", "", "whsec_ secret to sign with (direct)")
		typ      = flag.String("type", "bench.event", "event type(s), comma-separated: events are spread over them")
		rate     = flag.Float64("rate", 0, "open loop: events/s; 0: closed loop, as fast as accepted")
		conc     = flag.Int("concurrency", 32, "producers (closed loop) or most requests in flight (open loop)")
		duration = flag.Duration("duration", 10*time.Second, "stop after this long")
		count    = flag.Int("count", 0, "stop after this many events (0: only --duration bounds the run)")
		sizes    = flag.String("size", "1024", "body bytes, or a mix bytes:weight,... e.g. 1024:90,1048576:10")
		prefix   = flag.String("id-prefix", "", "event id prefix (default: loadgen-<random>)")
		out      = flag.String("out", "", "write one JSON line per event here")
	)
	flag.Parse()
	if *duration <= 0 && *count <= 0 {
		fatal("set --duration or --count: a load is always bounded")
	}
	sc, err := parseSizes(*sizes)
	if err != nil {
		fatal(err.Error())
	}
	if *prefix == "" {
		*prefix = fmt.Sprintf("loadgen-%x", time.Now().UnixNano()&0xffffff)
	}
	cfg := bench.GenConfig{Mode: bench.Mode(*via), Rate: *rate, Concurrency: *conc, Duration: *duration, Count: *count, Sizes: sc, IDPrefix: *prefix}
	types := benchcmd.List(*typ)
	switch cfg.Mode {
	case bench.ModeHTTP:
		keys := benchcmd.List(*apiKeys)
		if len(keys) == 0 {
			fatal("--api-key is required for --via http")
		}
		for _, k := range keys {
			for _, t := range types {
				cfg.Targets = append(cfg.Targets, bench.Target{URL: *target, APIKey: k, Type: t})
			}
		}
	case bench.ModeNATS:
		ts, keys := benchcmd.List(*tenants), benchcmd.List(*apiKeys)
		if len(ts) == 0 {
			fatal("--tenant is required for --via nats")
		}
		if len(keys) != len(ts) {
			fatal("--via nats needs one --api-key per --tenant (the producer's NATS token), in the same order")
		}
		cfg.NATSURL = *natsURL
		for i, tn := range ts {
			for _, t := range types {
				cfg.Targets = append(cfg.Targets, bench.Target{Tenant: tn, APIKey: keys[i], Type: t})
			}
		}
	case bench.ModeDirect:
		if *secret == "" {
			fatal("--secret is required for --via direct")
		}
		for _, t := range types {
			cfg.Targets = append(cfg.Targets, bench.Target{URL: *target, Secret: *secret, Type: t})
		}
	default:
		fatal("--via must be http, nats or direct")
	}

	type line struct {
		ID     string `json:"id"`
		Status int    `json:"status"`
		AckNs  int64  `json:"ack_ns"`
		Bytes  int    `json:"bytes"`
	}
	var mu sync.Mutex
	var lines []line
	if *out != "" {
		cfg.OnResult = func(seq int, r bench.Result) {
			mu.Lock()
			lines = append(lines, line{bench.EventID(*prefix, seq), r.Status, r.Ack.UnixNano(), sc[r.Size].Bytes})
			mu.Unlock()
		}
	}
	ctx, stop := benchcmd.SignalContext()
	defer stop()
	sum, err := bench.Generate(ctx, cfg)
	if err != nil {
		fatal(err.Error())
	}
	if *out != "" {
		err = benchcmd.WriteFile(*out, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			for _, l := range lines {
				_ = enc.Encode(l)
			}
			return nil
		})
		if err != nil {
			fatal(err.Error())
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(sum)
	fmt.Fprintf(os.Stderr, "loadgen: %d sent, %d accepted (%.0f/s), refused %v; response p50 %.1f ms p99 %.1f ms\n",
		sum.Sent, sum.Accepted, sum.AcceptedPerSec, sum.Refused, sum.ResponseMs.P50, sum.ResponseMs.P99)
}

func parseSizes(s string) ([]bench.SizeClass, error) {
	var out []bench.SizeClass
	for _, part := range benchcmd.List(s) {
		b, w, ok := strings.Cut(part, ":")
		n, err := strconv.Atoi(b)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--size %q: want bytes or bytes:weight", part)
		}
		weight := 1
		if ok {
			if weight, err = strconv.Atoi(w); err != nil || weight < 0 {
				return nil, fmt.Errorf("--size %q: bad weight", part)
			}
		}
		out = append(out, bench.SizeClass{Bytes: n, Weight: weight})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--size is empty")
	}
	return out, nil
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "loadgen:", msg)
	os.Exit(2)
}
