// Command runner is `make bench`: it starts fresh Herald deployments (the
// all-in-one bin/herald, and herald-ingest, herald-router and two
// herald-sender against an external nats-server and redis-server), runs
// each scenario on each with the load generator and sink of package bench,
// measures the same machine's limit (signed POSTs straight to the sink),
// balances every run's ledger, and writes bench/results/<date>-<scenario>
// .json and .svg and the figures section of docs/performance.md. The
// scaling scenario runs on the separate deployment with 1, 2 and 4 senders
// and prints what bound each run hit (scaling.go).
//
//	go run ./services/bench/runner --scenarios single,latency
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/testenv/natsbin"
	"github.com/heraldhq/herald/services/bench/internal/bench"
	"github.com/heraldhq/herald/services/internal/benchcmd"
)

func main() {
	var (
		scenarios   = flag.String("scenarios", "all", "comma-separated scenarios, or all: single,fanout,tenants,flaky,blackhole,latency,large,scaling (scaling runs on separate only, with 1, 2 and 4 senders)")
		deployments = flag.String("deployments", "all-in-one,separate", "comma-separated: all-in-one, separate, separate-r3 (a three-node JetStream cluster, R3 streams)")
		binDir      = flag.String("bin", "bin", "directory of herald, herald-ingest, herald-router, herald-sender (make build)")
		natsServer  = flag.String("nats-server", "", "nats-server binary >= 2.12 (default: built from the module proxy and cached)")
		redisServer = flag.String("redis-server", "", "redis-server binary (default: from PATH)")
		senders     = flag.Int("senders", 2, "herald-sender processes in the separate deployment (the scaling scenario runs 1, 2 and 4)")
		via         = flag.String("via", "http", "how events reach Herald: http (POST /v1/events) or nats")
		outDir      = flag.String("out", "bench/results", "where the JSON and SVG results go")
		doc         = flag.String("doc", "docs/performance.md", "document whose bench section is rewritten (empty: none)")
		pprofDir    = flag.String("pprof-dir", "", "take CPU profiles of every Herald process during each load, into this directory")
		keep        = flag.Bool("keep", false, "keep the deployments' data and logs (printed at the end)")
		heraldEnv   envFlags
	)
	flag.Var(&heraldEnv, "herald-env", "KEY=VALUE for every Herald process, e.g. HERALD_ENDPOINT_CONCURRENCY=64 (repeatable); noted in the results")
	flag.Parse()
	scs, err := bench.Select(bench.Scenarios(bench.Full), *scenarios)
	if err != nil {
		fatal(err)
	}
	var deps []bench.Deployer
	for _, d := range benchcmd.List(*deployments) {
		switch d {
		case "all-in-one":
			bin := filepath.Join(*binDir, "herald")
			mustExist(bin)
			deps = append(deps, bench.AllInOne{Bin: bin})
		case "separate", "separate-r3":
			for _, b := range []string{"herald-ingest", "herald-router", "herald-sender"} {
				mustExist(filepath.Join(*binDir, b))
			}
			ns := *natsServer
			if ns == "" {
				ns, err = natsbin.Build(func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
				if err != nil {
					fatal(err)
				}
			}
			rs := *redisServer
			if rs == "" {
				if rs, err = exec.LookPath("redis-server"); err != nil {
					fatal(fmt.Errorf("redis-server not on PATH (apt-get install redis-server, or --redis-server): %w", err))
				}
			}
			sep := bench.Separate{BinDir: *binDir, NATSServer: ns, RedisServer: rs, Senders: *senders}
			if d == "separate-r3" {
				sep.Replicas = 3
			}
			deps = append(deps, sep)
		default:
			fatal(fmt.Errorf("unknown deployment %q (all-in-one, separate, separate-r3)", d))
		}
	}
	if len(deps) == 0 {
		fatal(fmt.Errorf("no deployment selected"))
	}

	machine := bench.ReadMachine()
	date := time.Now().Format("2006-01-02")
	command := "make bench"
	if *scenarios != "all" {
		command += " SCENARIOS=" + *scenarios
	}
	if *deployments != "all-in-one,separate" {
		command += " DEPLOYMENTS=" + *deployments
	}
	if len(heraldEnv) > 0 {
		command += " (with " + strings.Join(heraldEnv, " ") + ")"
	}
	fmt.Fprintf(os.Stderr, "herald bench: %d scenarios × %d deployments on %s\n", len(scs), len(deps), machine)
	if machine.Busy() {
		fmt.Fprintf(os.Stderr, "herald bench: WARNING: the machine is busy (load average %s on %d CPUs): the figures will be noisy\n", machine.LoadAvg, machine.CPUs)
	}
	ctx, stop := benchcmd.SignalContext()
	defer stop()
	var scratch string
	if *keep {
		if scratch, err = os.MkdirTemp("", "herald-bench-"); err != nil {
			fatal(err)
		}
	}
	start := time.Now()
	runs, err := bench.Run(ctx, bench.Options{
		Scenarios: scs, Deployers: deps, Via: bench.Mode(*via), Log: os.Stderr, PprofDir: *pprofDir,
		Dir: scratch, KeepDir: *keep, HeraldEnv: heraldEnv,
	}, func(sc bench.Scenario, runs []bench.RunResult) {
		j, s, err := bench.WriteScenario(*outDir, bench.ScenarioFile{
			Scenario: sc.Name, Title: sc.Title, Date: date, Finished: time.Now(), Machine: machine,
			Command: command, Via: bench.Mode(*via), Runs: runs, Goals: bench.Goals(runs),
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: write results:", err)
			return
		}
		fmt.Fprintf(os.Stderr, "   wrote %s and %s\n", j, s)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	fmt.Printf("\nHerald bench, %s, %s (%.0f s)\n\n", date, machine, time.Since(start).Seconds())
	bench.PrintTable(os.Stdout, runs)
	bench.PrintScaling(os.Stdout, runs, heraldEnv)
	if *doc != "" && len(runs) > 0 {
		rel, _ := filepath.Rel(filepath.Dir(*doc), *outDir)
		if err := bench.UpdateDoc(*doc, bench.Markdown(runs, machine, command, date, filepath.ToSlash(rel), scs)+bench.ScalingMarkdown(runs, heraldEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "bench: update", *doc+":", err)
		} else {
			fmt.Fprintf(os.Stderr, "updated %s\n", *doc)
		}
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "deployments' data and logs kept in", scratch)
	}
	for _, r := range runs {
		if r.Void {
			fmt.Fprintln(os.Stderr, "bench: some runs are VOID (see above)")
			os.Exit(3)
		}
	}
	if err != nil {
		os.Exit(1)
	}
}

func mustExist(path string) {
	if _, err := os.Stat(path); err != nil {
		fatal(fmt.Errorf("%s not found: run make build first (or --bin)", path))
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(2)
}

type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, " ") }

func (e *envFlags) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}
