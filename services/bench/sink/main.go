// Command sink is a webhook receiver for load tests. It verifies Standard
// Webhooks signatures with --secret (package verify), answers 200, or fails
// and stalls on a schedule, and records the receive time and event id of
// every request. Every second it prints what it received and the latency
// from each event's accepted time (the body's "timestamp") to its receipt.
//
//	sink --listen 127.0.0.1:9000 --secret whsec_... --duration 2m --out records.jsonl
//	sink --fail-first-fraction 0.1                 # 10 % of paths fail each event's first attempt
//	sink --blackhole /hook/dead                     # never answers on that path
//	sink --schedule 10s-20s=500,30s-35s=stall:2s    # outages, from the sink's start
//
// Paths under /_sink/ are its control API (see package bench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/heraldhq/herald/services/bench/internal/bench"
	"github.com/heraldhq/herald/services/internal/benchcmd"
)

func main() {
	var (
		listen    = flag.String("listen", "127.0.0.1:9000", "address to listen on")
		secret    = flag.String("secret", os.Getenv("SINK_SECRET"), "whsec_ secret to verify every request with (empty: not verified)")
		failFirst = flag.Float64("fail-first-fraction", 0, "fraction of paths that answer 500 to each event's first request")
		failRate  = flag.Float64("fail-rate", 0, "fraction of requests answered 500, at random")
		stall     = flag.Duration("stall", 0, "delay every answer by this long")
		blackhole = flag.String("blackhole", "", "comma-separated paths that never answer")
		schedule  = flag.String("schedule", "", "outages: from-to=status|stall:duration|hold, comma-separated")
		duration  = flag.Duration("duration", 0, "stop after this long (0: until SIGINT/SIGTERM)")
		out       = flag.String("out", "", "write the records (JSON lines) here when stopping")
		every     = flag.Duration("stats-every", time.Second, "print counters this often (0: never)")
	)
	flag.Parse()
	win, err := bench.ParseSchedule(*schedule)
	if err != nil {
		fatal(err)
	}
	def := bench.Behavior{Secret: *secret, FailRate: *failRate, Stall: *stall}
	sink, err := bench.NewSink(bench.WithDefault(def), bench.WithFailFirstFraction(*failFirst), bench.WithSchedule(win))
	if err != nil {
		fatal(err)
	}
	for _, p := range benchcmd.List(*blackhole) {
		b := def
		b.Blackhole = true
		if err := sink.Register(p, b); err != nil {
			fatal(err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fatal(err)
	}
	srv := &http.Server{Handler: sink, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fatal(err)
		}
	}()
	fmt.Fprintf(os.Stderr, "sink: listening on http://%s (verify: %v)\n", ln.Addr(), *secret != "")

	ctx, stop := benchcmd.SignalContext()
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	var last bench.SinkStats
	seen := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick:
			s := sink.Stats()
			recs := sink.Records("")
			lat := bench.SinkLatency(recs[min(seen, len(recs)):])
			seen = len(recs)
			fmt.Fprintf(os.Stderr, "sink: %d req (+%d) ok %d (+%d) unique %d failed %d held %d bad-signature %d; latency p50 %.0f p99 %.0f ms\n",
				s.Requests, s.Requests-last.Requests, s.OK, s.OK-last.OK, s.Unique, s.Failed, s.Held, s.BadSignature, lat.P50, lat.P99)
			last = s
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = srv.Close()
	recs := sink.Records("")
	if *out != "" {
		if err := benchcmd.WriteFile(*out, func(w io.Writer) error { return bench.WriteRecords(w, recs) }); err != nil {
			fatal(err)
		}
	}
	s := sink.Stats()
	lat := bench.SinkLatency(recs)
	fmt.Fprintf(os.Stderr, "sink: done: %d requests, %d ok (%d unique), %d failed on purpose, %d held, %d bad signatures; latency p50 %.0f p90 %.0f p99 %.0f max %.0f ms (body timestamp, ms resolution)\n",
		s.Requests, s.OK, s.Unique, s.Failed, s.Held, s.BadSignature, lat.P50, lat.P90, lat.P99, lat.Max)
	if s.BadSignature > 0 {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "sink:", err)
	os.Exit(2)
}
