package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveHeraldBinaries()
	os.Exit(code)
}

// scalingWorkers is HERALD_SENDER_WORKERS in TestScaling. With the default
// (256 workers, 5,120 requests/s of 50 ms per sender) one sender already
// outruns the CPU of a 2-core machine, and the runs could only show that
// bound. 16 workers (320/s per sender) keep every run below it, so adding
// senders must add deliveries: the test shows the growth, and make bench
// the bound. Fewer workers switch nothing off; every other setting is
// Herald's default (the endpoint cap of 10 included).
const scalingWorkers = 16

// scalingDeployment is the deployment docker-compose.yml and
// deploy/kubernetes describe, as processes: herald-ingest, herald-router
// and herald-senders against a nats-server and a redis-server (package
// bench's Separate, as make bench runs it).
func scalingDeployment(t *testing.T) Separate {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Herald as processes, four times")
	}
	rs, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Unavailable(t, "redis-server not on PATH (make test-deps installs it): %v", err)
	}
	return Separate{BinDir: testenv.HeraldBinaries(t, false), NATSServer: testenv.NATSBinary(t), RedisServer: rs}
}

func scalingSmokeScenario(t *testing.T) Scenario {
	t.Helper()
	scs, err := Select(Scenarios(Smoke), "scaling")
	if err != nil || len(scs) != 1 {
		t.Fatalf("scaling scenario: %v", err)
	}
	return scs[0]
}

// TestScaling runs the slow-receiver scenario (200 endpoints answering in
// 50 ms) on separate processes with 1, 2 and 4 senders and logs
// deliveries/s for each; timings are reported, never asserted. Every
// run's books must balance exactly: each (event, endpoint) pair one
// request, answered 2xx.
func TestScaling(t *testing.T) {
	dep := scalingDeployment(t)
	sc := scalingSmokeScenario(t)
	env := []string{"HERALD_SENDER_WORKERS=" + strconv.Itoa(scalingWorkers)}
	var runs []RunResult
	for _, pl := range plan(sc, []Deployer{dep}) {
		t.Run(pl.dep.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var recs func() []Record
			r := RunScenario(ctx, Options{Dir: t.TempDir(), Log: testWriter{t}, HeraldEnv: env,
				During: func(_ context.Context, _ *Stack, sink *Sink, prefix string) error {
					recs = func() []Record { return sink.Records(prefix) }
					return nil
				}}, pl.sc, pl.dep)
			r.Senders = pl.senders
			t.Logf("%d sender(s): %s", pl.senders, oneLine(r))
			checkRun(t, pl.sc, r)
			if recs == nil {
				t.Fatal("the main phase never started")
			}
			checkOnce(t, recs(), pl.sc.Count*pl.sc.Endpoints)
			runs = append(runs, r)
		})
	}
	var b strings.Builder
	PrintScaling(&b, runs, env)
	t.Log(b.String())
}

// TestScalingSenderStopped stops one of two senders with SIGTERM while it
// has requests in flight to slow receivers (its 256 default workers all
// busy), as a scale-down does: the sender finishes them and exits 0, the
// other sender delivers the rest,
// and the receiver's own records show exactly one request per (event,
// endpoint), answered 2xx: nothing lost, nothing sent twice. The books are
// balanced only once DELIVERIES is empty, every job acked, so no job can
// come back later (HERALD_ACK_WAIT=2s would bring an unacked one back
// within the test).
func TestScalingSenderStopped(t *testing.T) {
	dep := scalingDeployment(t)
	sc := scalingSmokeScenario(t)
	sc.Count = 20
	dep.Senders, dep.Label = 2, ScalingLabel(2)
	want := sc.Count * sc.Endpoints
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs func() []Record
	var inFlight float64
	var stopped time.Duration
	var deliveredAtStop int64
	during := func(ctx context.Context, st *Stack, sink *Sink, prefix string) error {
		recs = func() []Record { return sink.Records(prefix) }
		var victim *Proc
		for _, p := range st.Procs {
			if p.Name == "herald-sender-1" {
				victim = p
			}
		}
		if victim == nil {
			return errors.New("no herald-sender-1")
		}
		if err := waitUntil(ctx, 30*time.Second, func() bool { return sink.Tracked() >= int64(want/4) }); err != nil {
			return fmt.Errorf("a quarter of %d deliveries: %w", want, err)
		}
		var err error
		if inFlight, err = gauge(victim.URL+"/metrics", "herald_sender_in_flight"); err != nil {
			return err
		}
		deliveredAtStop = sink.Tracked()
		t0 := time.Now()
		if err := victim.Terminate(20 * time.Second); err != nil {
			return fmt.Errorf("herald-sender-1 after SIGTERM: %w; last lines:\n%s", err, victim.Tail(20))
		}
		stopped = time.Since(t0)
		if err := waitUntil(ctx, 40*time.Second, func() bool { return sink.Tracked() >= int64(want) }); err != nil {
			return fmt.Errorf("%d of %d delivered: %w", sink.Tracked(), want, err)
		}
		nc, err := ConnectNATS(st.NATSURL, st.NATSOptions...)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		var left uint64
		if err := waitUntil(ctx, 20*time.Second, func() bool {
			s, err := js.Stream(ctx, bus.StreamDeliveries)
			if err != nil {
				return false
			}
			left = s.CachedInfo().State.Msgs
			return left == 0
		}); err != nil {
			return fmt.Errorf("DELIVERIES still holds %d jobs: %w", left, err)
		}
		return nil
	}
	r := RunScenario(ctx, Options{Dir: t.TempDir(), Log: testWriter{t}, During: during,
		HeraldEnv: []string{"HERALD_ACK_WAIT=2s"}}, sc, dep)
	t.Logf("SIGTERM to herald-sender-1 with %.0f jobs in flight, %d of %d delivered: it stopped in %s; %s",
		inFlight, deliveredAtStop, want, stopped.Round(time.Millisecond), oneLine(r))
	checkRun(t, sc, r)
	if recs == nil {
		t.Fatal("the main phase never started")
	}
	if inFlight < 1 {
		t.Errorf("herald-sender-1 had no job in flight when stopped: the test proved nothing")
	}
	checkOnce(t, recs(), want)
}

// checkOnce asserts the receiver's records: exactly one request per
// (event, endpoint) pair, each answered 2xx, want pairs in all.
func checkOnce(t *testing.T, recs []Record, want int) {
	t.Helper()
	type pair struct{ id, key string }
	n := map[pair]int{}
	for _, r := range recs {
		n[pair{r.EventID, r.Key}]++
		if !r.OK() {
			t.Errorf("%s at %s: answered %d (attempt %d)", r.EventID, r.Key, r.Status, r.Attempt)
		}
	}
	twice := 0
	for p, c := range n {
		if c != 1 {
			twice++
			if twice <= 5 {
				t.Errorf("%s at %s: %d requests, want 1", p.id, p.key, c)
			}
		}
	}
	if len(n) != want || len(recs) != want || twice > 0 {
		t.Errorf("%d requests for %d pairs (%d with more than one), want %d pairs of one request each", len(recs), len(n), twice, want)
	}
}

// waitUntil polls cond every 20 ms until it holds, within passes or ctx
// ends.
func waitUntil(ctx context.Context, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// TestScalingBound checks the names the report gives runs' bounds.
func TestScalingBound(t *testing.T) {
	for _, c := range []struct {
		row  ScalingRow
		want string
	}{
		{ScalingRow{Senders: 1, PerSec: 285, SlotUse: 0.98, JobMs: 55, CapBound: 40000, MachineBusy: 1, MachineCPU: 0.2}, "worker slots"},
		{ScalingRow{Senders: 4, PerSec: 2900, SlotUse: 0.84, JobMs: 293, CapBound: 40000, MachineBusy: 1, MachineCPU: 0.6}, "CPU: "},
		{ScalingRow{Senders: 4, PerSec: 2900, SlotUse: 0.4, JobMs: 60, CapBound: 40000, MachineBusy: 0.95, MachineCPU: 0.9}, "CPU: "},
		{ScalingRow{Senders: 4, PerSec: 2900, SlotUse: 0.4, JobMs: 60, CapBound: 40000, MachineBusy: 0.5, MachineCPU: 0.5,
			Procs: []ProcFigures{{Name: "redis-server", CPUPercent: 97}}}, "CPU of redis-server"},
		{ScalingRow{Senders: 4, PerSec: 39000, SlotUse: 0.5, JobMs: 51, CapBound: 40000}, "endpoint cap"},
		{ScalingRow{Senders: 4, PerSec: 100, SlotUse: 0.1, JobMs: 51, CapBound: 40000, MachineBusy: 0.2}, "none of these"},
	} {
		if got := c.row.bound(); !strings.HasPrefix(got, c.want) {
			t.Errorf("%+v: bound %q, want %q...", c.row, got, c.want)
		}
	}
}

func TestParseCommandStats(t *testing.T) {
	got := parseCommandStats("# Memory\r\nused_memory:1024\r\nused_memory_rss:2048\r\n# Commandstats\r\ncmdstat_evalsha:calls=12,usec=30,usec_per_call=2.50\r\ncmdstat_zadd:calls=4,usec=8\r\n")
	if len(got) != 3 || got["evalsha"] != 12 || got["zadd"] != 4 || got[usedMemory] != 1024 {
		t.Fatalf("parseCommandStats = %v", got)
	}
}

// TestScalingPlan: the scaling scenario runs on separate deployments only,
// once per sender count, with Count events per sender; others run once
// per deployment.
func TestScalingPlan(t *testing.T) {
	deps := []Deployer{AllInOne{}, Separate{}, Separate{Replicas: 3}}
	got := plan(scalingScenario, deps)
	var names []string
	for _, p := range got {
		names = append(names, fmt.Sprintf("%s/%d/%d", p.dep.Name(), p.senders, p.sc.Count))
	}
	want := "separate, 1 sender/1/40 separate, 2 senders/2/80 separate, 4 senders/4/160 " +
		"separate-r3, 1 sender/1/40 separate-r3, 2 senders/2/80 separate-r3, 4 senders/4/160"
	if strings.Join(names, " ") != want {
		t.Fatalf("plan = %q, want %q", strings.Join(names, " "), want)
	}
	if got := plan(scalingScenario, []Deployer{AllInOne{}}); len(got) != 0 {
		t.Fatalf("scaling on the all-in-one: %d runs", len(got))
	}
	if got := plan(Scenarios(Full)[0], deps); len(got) != 3 || got[1].senders != 0 {
		t.Fatalf("single: %+v", got)
	}
}

// TestScalingRows: R1 and R3 runs are worked out apart, each speedup over
// its own deployment's run with one sender.
func TestScalingRows(t *testing.T) {
	run := func(dep string, senders int, perSec float64) RunResult {
		return RunResult{Scenario: "scaling", Deployment: dep, Senders: senders,
			Main: PhaseResult{DeliveredPerSec: perSec, WallSeconds: 1, Ledger: LedgerReport{Delivered: int(perSec)}}}
	}
	rows := Scaling([]RunResult{
		run("separate-r3, 2 senders", 2, 300), run("separate, 2 senders", 2, 500), run("separate, 1 sender", 1, 250),
		run("separate-r3, 1 sender", 1, 200), run("single", 0, 1000),
	}, nil)
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s %.1f", r.Deployment, r.Speedup))
	}
	want := "separate, 1 sender 1.0|separate, 2 senders 2.0|separate-r3, 1 sender 1.0|separate-r3, 2 senders 1.5"
	if strings.Join(got, "|") != want {
		t.Fatalf("rows %q, want %q", strings.Join(got, "|"), want)
	}
}

// The attempts' mean is the histogram's sum over its count within the
// phase, not over the deliveries: retries count as attempts.
func TestTrafficAttempts(t *testing.T) {
	s0 := trafficSample{attempts: map[string]float64{"count": 10, "sum": 1.0}}
	s := trafficSample{attempts: map[string]float64{"count": 210, "sum": 1.5}}
	tr := s.since(s0, 100)
	if tr == nil || tr.AttemptsPerDelivery != 2 || tr.AttemptMeanMs != 2.5 {
		t.Fatalf("traffic %+v, want 2 attempts per delivery of 2.5 ms", tr)
	}
	if line := trafficLine(tr); !strings.Contains(line, "HTTP attempts 2.00 of 2.50 ms on average") {
		t.Fatalf("traffic line %q", line)
	}
}
