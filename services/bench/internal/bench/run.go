package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
)

// Options configure a bench run.
type Options struct {
	Scenarios []Scenario
	Deployers []Deployer
	// Via is how events are handed to Herald: ModeHTTP (POST /v1/events,
	// the default) or ModeNATS (straight to JetStream).
	Via Mode
	// Dir is the scratch directory for deployments (data, logs); a new
	// temporary one when empty. Kept when KeepDir is set.
	Dir     string
	KeepDir bool
	// Log receives progress lines; nil: discarded.
	Log io.Writer
	// PprofDir, when set, receives a CPU profile of every Herald process
	// during each load phase (they serve HERALD_PPROF_ADDR).
	PprofDir string
	// HeraldEnv is passed to every Herald process (KEY=VALUE), after the
	// bench's settings.
	HeraldEnv []string
	// During, when set, runs beside the main phase's load, from its start;
	// the phase's books are balanced only after it returns, and its error
	// voids the run. prefix is the phase's event id prefix. Tests use it to
	// act on the deployment under load (stop a sender).
	During func(ctx context.Context, st *Stack, sink *Sink, prefix string) error
}

// BaselineFigures are the signed POSTs straight to the sink: this
// machine's limit for sending webhooks, at the same concurrency and body
// sizes.
type BaselineFigures struct {
	RequestsPerSec float64     `json:"requests_per_s"`
	Requests       int64       `json:"requests"`
	Failed         int64       `json:"failed"`
	Concurrency    int         `json:"concurrency"`
	Seconds        float64     `json:"seconds"`
	ResponseMs     Percentiles `json:"response_ms"`
	// CPUMicrosPerRequest is the bench process's CPU (generator and sink,
	// both ends of the request) per request.
	CPUMicrosPerRequest float64 `json:"cpu_us_per_request,omitempty"`
}

// ProcFigures are one process's costs over a load phase.
type ProcFigures struct {
	Name       string  `json:"name"`
	Herald     bool    `json:"herald"`
	CPUSeconds float64 `json:"cpu_s"`
	CPUPercent float64 `json:"cpu_percent"` // of one core, over the phase
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// CPUMicros is the process's CPU per delivery of the phase.
	CPUMicros float64 `json:"cpu_us_per_delivery,omitempty"`
}

// SizeFigures are the events of one size class.
type SizeFigures struct {
	Bytes     int            `json:"bytes"`
	Accepted  int            `json:"accepted"`
	Refused   int            `json:"refused"`
	Statuses  map[string]int `json:"statuses"` // Herald's answers
	Refusal   string         `json:"refusal,omitempty"`
	LatencyMs Percentiles    `json:"latency_ms"`
}

// PhaseResult is one load phase against a deployment.
type PhaseResult struct {
	Name            string     `json:"name"`
	Load            GenSummary `json:"load"`
	DeliveredPerSec float64    `json:"delivered_per_s"`
	RatioToBaseline float64    `json:"ratio_to_baseline"`
	// LatencyMs is accepted -> received, first 2xx per pair (see
	// Analysis.Latency for how the accepted instant is placed).
	LatencyMs Percentiles `json:"latency_ms"`
	// FromAckMs is the same deliveries from the producer's reading of its
	// 202: the producer's view (negative values clamped to 0 and counted).
	FromAckMs Percentiles   `json:"latency_from_202_ms"`
	Ledger    LedgerReport  `json:"ledger"`
	Processes []ProcFigures `json:"processes"`
	// DeployCPUMicros is the CPU of every process of the deployment (Herald,
	// NATS, Redis) per delivery; BenchCPUMicros the bench process's.
	DeployCPUMicros float64 `json:"deployment_cpu_us_per_delivery,omitempty"`
	BenchCPUMicros  float64 `json:"bench_cpu_us_per_delivery,omitempty"`
	// StageMicros splits DeployCPUMicros by stage (see Stages), when the
	// Herald processes were profiled: each Herald process's CPU by its
	// profile's shares, nats-server's and redis-server's whole.
	StageMicros   map[string]float64 `json:"stage_cpu_us_per_delivery,omitempty"`
	WallSeconds   float64            `json:"wall_s"` // load start to the last delivery or cut-off
	BucketSeconds float64            `json:"bucket_s"`
	Series        []Point            `json:"series"`
	BySize        []SizeFigures      `json:"by_size,omitempty"`
	// Traffic is what the phase cost Redis and NATS (separate deployment).
	Traffic  *Traffic `json:"traffic,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
}

// RunResult is one scenario on one deployment.
type RunResult struct {
	Scenario    string          `json:"scenario"`
	Deployment  string          `json:"deployment"`
	Void        bool            `json:"void"`
	VoidReasons []string        `json:"void_reasons,omitempty"`
	Error       string          `json:"error,omitempty"`
	Notes       []string        `json:"notes,omitempty"`
	Baseline    BaselineFigures `json:"baseline"`
	// Floor is what the scenario's path costs JetStream alone (floor.go),
	// for the scenarios that measure it.
	Floor *FloorFigures `json:"floor,omitempty"`
	Main  PhaseResult   `json:"main"`
	// Control is the blackhole scenario's load without the blackhole.
	Control *PhaseResult `json:"control,omitempty"`
	// Senders is the count of herald-sender processes of a scaling run.
	Senders int `json:"senders,omitempty"`
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// Run runs every scenario on every deployment, one fresh deployment each,
// and returns the results in order. onScenario, if set, is called with each
// scenario's results as soon as they are in (to write them out).
func Run(ctx context.Context, o Options, onScenario func(Scenario, []RunResult)) ([]RunResult, error) {
	if o.Via == "" {
		o.Via = ModeHTTP
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "herald-bench-")
		if err != nil {
			return nil, err
		}
		o.Dir = d
		if !o.KeepDir {
			defer os.RemoveAll(d)
		}
	}
	var all []RunResult
	for _, sc := range o.Scenarios {
		var runs []RunResult
		planned := plan(sc, o.Deployers)
		if len(planned) == 0 {
			o.logf("== %s: skipped: it runs on the separate deployments only", sc.Name)
			continue
		}
		for _, pl := range planned {
			sc, dep := pl.sc, pl.dep
			if ctx.Err() != nil {
				return all, ctx.Err()
			}
			o.logf("== %s on %s: %s", sc.Name, dep.Name(), sc.Title)
			r := RunScenario(ctx, o, sc, dep)
			r.Senders = pl.senders
			for _, n := range r.Notes {
				o.logf("   note: %s", n)
			}
			if r.Void {
				o.logf("   *** VOID: %s", strings.Join(r.VoidReasons, "; "))
			}
			o.logf("   %s", oneLine(r))
			runs = append(runs, r)
		}
		all = append(all, runs...)
		if onScenario != nil {
			onScenario(sc, runs)
		}
	}
	return all, nil
}

func oneLine(r RunResult) string {
	if r.Error != "" {
		return "error: " + r.Error
	}
	m := r.Main
	return fmt.Sprintf("accepted %.0f/s, delivered %.0f/s = %.2f× baseline %.0f/s; p50 %.1f p99 %.1f max %.1f ms; dups %d dead %d missing %d",
		m.Load.AcceptedPerSec, m.DeliveredPerSec, m.RatioToBaseline, r.Baseline.RequestsPerSec,
		m.LatencyMs.P50, m.LatencyMs.P99, m.LatencyMs.Max, m.Ledger.Duplicates, m.Ledger.DeadLettered, m.Ledger.Missing)
}

type phaseTopo struct {
	name    string
	targets []Target
	groups  [][]string
}

type topology struct {
	phases    []phaseTopo
	epKey     map[string]string // Herald endpoint id -> sink key
	blackhole []string
	failing   []string // blackhole and fail-first endpoints
	endpoints int
}

// RunScenario runs one scenario on a fresh deployment. Failures are in the
// result (Error, Void), never hidden.
func RunScenario(ctx context.Context, o Options, sc Scenario, dep Deployer) (res RunResult) {
	res = RunResult{Scenario: sc.Name, Deployment: dep.Name()}
	fail := func(err error) RunResult {
		res.Error = err.Error()
		res.Void = true
		res.VoidReasons = append(res.VoidReasons, "the run failed: "+err.Error())
		return res
	}
	if o.Via == "" {
		o.Via = ModeHTTP
	}
	runID := randToken("")[:8]
	dir := filepath.Join(o.Dir, sc.Name+"-"+dep.Name()+"-"+runID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}

	sink, err := NewSink(WithHoldLimit(time.Minute))
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	srv := &http.Server{Handler: sink, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close() // also ends requests a blackhole still holds
	sinkURL := "http://" + ln.Addr().String()

	t0 := time.Now()
	st, err := dep.Start(ctx, DeployOptions{Dir: dir, MaxEventBytes: sc.MaxEventBytes, RetrySchedule: sc.RetrySchedule, Pprof: o.PprofDir != "", Env: o.HeraldEnv})
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", dep.Name(), err))
	}
	o.logf("   %s started in %.1f s", dep.Name(), time.Since(t0).Seconds())
	defer func() {
		t0 := time.Now()
		st.Stop()
		o.logf("   %s stopped in %.1f s", dep.Name(), time.Since(t0).Seconds())
	}()
	started := fail
	fail = func(err error) RunResult { // with what the processes said
		for _, p := range st.Procs {
			if p.Herald {
				res.Notes = append(res.Notes, fmt.Sprintf("last lines of %s:\n%s", p.Name, p.Tail(15)))
			}
		}
		return started(err)
	}
	nc, err := ConnectNATS(st.NATSURL, st.NATSOptions...)
	if err != nil {
		return fail(fmt.Errorf("connect to %s: %w", st.NATSURL, err))
	}
	defer nc.Close()
	dlq, err := WatchDLQ(ctx, nc)
	if err != nil {
		return fail(err)
	}
	defer dlq.Stop()

	api := &API{Base: st.APIURL, Admin: st.AdminToken, HTTP: NewHTTPClient(16, 30*time.Second)}
	t0 = time.Now()
	topo, err := setup(ctx, api, sink, sinkURL, sc, runID)
	if err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	o.logf("   set up %d endpoints in %.1f s", topo.endpoints, time.Since(t0).Seconds())

	// Baseline: the same bodies, signed the same way, straight to the sink.
	res.Baseline, err = baseline(ctx, sink, sinkURL, sc, runID, topo.endpoints)
	if err != nil {
		return fail(fmt.Errorf("baseline: %w", err))
	}
	if res.Baseline.Failed > 0 {
		res.VoidReasons = append(res.VoidReasons, fmt.Sprintf("baseline: %d of %d signed requests failed", res.Baseline.Failed, res.Baseline.Requests))
	}

	o.logf("   baseline: %s signed POSTs/s straight to the sink (%d requests)", fmtRate(res.Baseline.RequestsPerSec), res.Baseline.Requests)
	if sc.FloorEvents > 0 {
		f, err := measureFloor(ctx, dir, sc.FloorEvents, sc.Sizes[0].Bytes)
		if err != nil {
			return fail(fmt.Errorf("floor: %w", err))
		}
		res.Floor = &f
		o.logf("   floor: JetStream's hops alone cost %.0f µs per delivery (%s/s), %.0f µs with the history's (%s/s)",
			f.PipelineMicros, fmtRate(f.PipelinePerSec), f.HistoryMicros, fmtRate(f.HistoryPerSec))
	}

	// Warm-up: one event per target, until every endpoint has been reached
	// (caches filled, connections open).
	t0 = time.Now()
	if missing := warmUp(ctx, o, sink, topo, runID, st.NATSURL); missing > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("warm-up: %d endpoints not reached within 20 s", missing))
	}
	o.logf("   warmed up in %.1f s", time.Since(t0).Seconds())

	for _, ph := range topo.phases {
		pr := runPhase(ctx, o, sc, st, sink, dlq, topo, ph, runID+"-"+ph.name[:1], res.Baseline.RequestsPerSec)
		if ph.name == "control" {
			res.Control = &pr
		} else {
			res.Main = pr
		}
		if pr.Ledger.Void {
			res.VoidReasons = append(res.VoidReasons, prefixAll(ph.name+": ", pr.Ledger.Reasons)...)
		}
	}
	for _, p := range st.Procs {
		if p.Exited() && !p.terminated {
			res.VoidReasons = append(res.VoidReasons, p.Name+" exited during the run; last lines:\n"+p.Tail(10))
		}
	}
	res.Notes = append(res.Notes, notes(sc, &res)...)
	res.Void = len(res.VoidReasons) > 0
	return res
}

func prefixAll(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// setup creates the tenants and endpoints through the API and registers
// each endpoint's secret and behavior with the sink.
func setup(ctx context.Context, api *API, sink *Sink, sinkURL string, sc Scenario, runID string) (*topology, error) {
	nt := sc.Tenants
	if sc.Blackhole {
		nt++ // the control tenant: the same endpoints without the blackhole
	}
	tenants := make([]TenantInfo, nt)
	if err := parallel(ctx, nt, 8, func(i int) error {
		t, err := api.CreateTenant(ctx, fmt.Sprintf("bench %s t%d", runID, i))
		tenants[i] = t
		return err
	}); err != nil {
		return nil, err
	}
	type ep struct {
		tenant, index int
		key, typ      string
		spec          EndpointSpec
		b             Behavior
	}
	var eps []ep
	for t := range nt {
		for e := range sc.Endpoints {
			typ := fmt.Sprintf("bench.e%d", e)
			if sc.Fanout {
				typ = "bench.fanout"
			}
			key := fmt.Sprintf("/e/%s/t%d/e%d", runID, t, e)
			x := ep{tenant: t, index: e, key: key, typ: typ, b: Behavior{Stall: sc.Stall},
				spec: EndpointSpec{Name: key, URL: sinkURL + key, Events: []string{typ}}}
			if sc.FailFirstEvery > 0 && (t*sc.Endpoints+e)%sc.FailFirstEvery == 0 {
				x.b.FailFirst = true
			}
			eps = append(eps, x)
		}
	}
	topo := &topology{epKey: map[string]string{}}
	if sc.Blackhole {
		key := fmt.Sprintf("/e/%s/t0/blackhole", runID)
		eps = append(eps, ep{tenant: 0, index: -1, key: key, typ: "bench.fanout", b: Behavior{Blackhole: true},
			spec: EndpointSpec{Name: key, URL: sinkURL + key, Events: []string{"bench.fanout"}, TimeoutMS: 1000, MaxAttempts: 1}})
		topo.blackhole = []string{key}
	}
	for _, x := range eps {
		if x.b.FailFirst || x.b.Blackhole {
			topo.failing = append(topo.failing, x.key)
		}
	}
	var mu sync.Mutex
	if err := parallel(ctx, len(eps), 8, func(i int) error {
		x := &eps[i]
		info, err := api.CreateEndpoint(ctx, tenants[x.tenant].APIKey, x.spec)
		if err != nil {
			return err
		}
		x.b.Secret = info.Secret
		mu.Lock()
		topo.epKey[info.ID] = x.key
		mu.Unlock()
		return sink.Register(x.key, x.b)
	}); err != nil {
		return nil, err
	}
	topo.endpoints = len(eps)

	build := func(name string, tenantIdx []int) phaseTopo {
		ph := phaseTopo{name: name}
		byTenant := map[int][]ep{}
		for _, x := range eps {
			byTenant[x.tenant] = append(byTenant[x.tenant], x)
		}
		if sc.Fanout {
			for _, t := range tenantIdx {
				var keys []string
				for _, x := range byTenant[t] {
					keys = append(keys, x.key)
				}
				ph.targets = append(ph.targets, Target{URL: api.Base, APIKey: tenants[t].APIKey, Tenant: tenants[t].ID, Type: "bench.fanout", Group: len(ph.groups)})
				ph.groups = append(ph.groups, keys)
			}
			return ph
		}
		// One target per endpoint, tenants interleaved so that consecutive
		// events go to different tenants.
		for e := range sc.Endpoints {
			for _, t := range tenantIdx {
				x := byTenant[t][e]
				ph.targets = append(ph.targets, Target{URL: api.Base, APIKey: tenants[t].APIKey, Tenant: tenants[t].ID, Type: x.typ, Group: len(ph.groups)})
				ph.groups = append(ph.groups, []string{x.key})
			}
		}
		return ph
	}
	main := make([]int, sc.Tenants)
	for i := range main {
		main[i] = i
	}
	if sc.Blackhole {
		topo.phases = append(topo.phases, build("control", []int{sc.Tenants}))
	}
	topo.phases = append(topo.phases, build("main", main))
	return topo, nil
}

// parallel runs fn(0..n-1) on at most workers goroutines; the first error
// stops it.
func parallel(ctx context.Context, n, workers int, fn func(int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				if ctx.Err() != nil {
					continue
				}
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func baseline(ctx context.Context, sink *Sink, sinkURL string, sc Scenario, runID string, endpoints int) (BaselineFigures, error) {
	n := min(max(endpoints, 1), 100)
	var targets []Target
	for i := range n {
		secret, err := sign.GenerateSecret(sign.Standard)
		if err != nil {
			return BaselineFigures{}, err
		}
		key := fmt.Sprintf("/baseline/%s/%d", runID, i)
		if err := sink.Register(key, Behavior{Secret: secret}); err != nil {
			return BaselineFigures{}, err
		}
		targets = append(targets, Target{URL: sinkURL + key, Type: "bench.baseline", Secret: secret})
	}
	prefix := runID + "-b"
	cpu0, _ := ReadProc(os.Getpid())
	sum, err := Generate(ctx, GenConfig{
		Mode: ModeDirect, Targets: targets, Concurrency: sc.Concurrency, Duration: sc.Baseline,
		Sizes: sc.Sizes, IDPrefix: prefix,
	})
	if err != nil {
		return BaselineFigures{}, err
	}
	bad := 0
	for _, r := range sink.Records(prefix) {
		if !r.OK() {
			bad++
		}
	}
	bf := BaselineFigures{
		RequestsPerSec: sum.AcceptedPerSec, Requests: sum.Sent, Failed: sum.Sent - sum.Accepted + int64(bad),
		Concurrency: sc.Concurrency, Seconds: sum.ElapsedSeconds, ResponseMs: sum.ResponseMs,
	}
	if cpu1, ok := ReadProc(os.Getpid()); ok && sum.Sent > 0 {
		bf.CPUMicrosPerRequest = math.Round((cpu1.CPUSeconds - cpu0.CPUSeconds) * 1e6 / float64(sum.Sent))
	}
	return bf, nil
}

// warmUp sends one event per target of every phase and waits until each
// endpoint has received a request; it returns how many were not reached.
func warmUp(ctx context.Context, o Options, sink *Sink, topo *topology, runID, natsURL string) int {
	var targets []Target
	keys := map[string]bool{}
	for _, ph := range topo.phases {
		targets = append(targets, ph.targets...)
		for _, g := range ph.groups {
			for _, k := range g {
				keys[k] = true
			}
		}
	}
	_, _ = Generate(ctx, GenConfig{Mode: o.Via, Targets: targets, Concurrency: 8, Count: len(targets), IDPrefix: runID + "-w", NATSURL: natsURL})
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing := 0
		for k := range keys {
			if sink.Requests(k) == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return missing
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runPhase(ctx context.Context, o Options, sc Scenario, st *Stack, sink *Sink, dlq *DLQWatcher,
	topo *topology, ph phaseTopo, prefix string, baselinePS float64) PhaseResult {
	pr := PhaseResult{Name: ph.name}
	ledger := NewLedger(prefix, ph.groups)
	ledger.MayDeadLetter(topo.blackhole...)
	ledger.Failing(topo.failing...)
	ledger.ExcludeFromLatency(topo.blackhole...)
	sink.Track(prefix)

	type status struct{ size, code int }
	var stMu sync.Mutex
	statuses := map[status]int{}
	details := map[status]string{}

	before := map[*Proc]ProcSample{}
	for _, p := range st.Procs {
		before[p], _ = ReadProc(p.Pid())
	}
	self0, _ := ReadProc(os.Getpid())
	meter := startMeter(ctx, st)
	var during chan error
	if o.During != nil && ph.name == "main" {
		during = make(chan error, 1)
		go func() { during <- o.During(ctx, st, sink, prefix) }()
	}
	var profWG sync.WaitGroup
	profiles := map[string]string{} // process name -> its CPU profile
	if o.PprofDir != "" {
		secs := int(math.Ceil(sc.Duration.Seconds()))
		for _, p := range st.Procs {
			if p.PprofAddr == "" {
				continue
			}
			path := filepath.Join(o.PprofDir, fmt.Sprintf("%s-%s-%s-%s.pprof", sc.Name, st.Deployment, ph.name, p.Name))
			pr.Profiles = append(pr.Profiles, path)
			profiles[p.Name] = path
			profWG.Go(func() { _ = fetchProfile(ctx, p.PprofAddr, secs, path) })
		}
	}

	sum, err := Generate(ctx, GenConfig{
		Mode: o.Via, Targets: ph.targets, Rate: sc.Rate, Concurrency: sc.Concurrency, Duration: sc.Duration, Count: sc.Count,
		Sizes: sc.Sizes, IDPrefix: prefix, NATSURL: st.NATSURL,
		OnResult: func(seq int, r Result) {
			ledger.Note(seq, ph.targets[r.Target].Group, r)
			stMu.Lock()
			k := status{r.Size, r.Status}
			statuses[k]++
			if _, ok := details[k]; !ok && !r.Accepted() {
				details[k] = r.Detail
			}
			stMu.Unlock()
		},
	})
	pr.Load = sum
	if err != nil {
		pr.Ledger.Void, pr.Ledger.Reasons = true, []string{"load: " + err.Error()}
		return pr
	}
	// The cut-off: every pair resolved, or Drain after the load, or 10 s
	// without a single delivery or dead letter (what is left is held:
	// an open breaker, a long retry wait).
	expected := ledger.Expected()
	loadEnd := time.Now()
	last, lastChange := -1, time.Now()
	for {
		got := int(sink.Tracked()) + dlq.Count(prefix)
		if got != last {
			last, lastChange = got, time.Now()
		}
		if got >= expected || time.Since(loadEnd) > sc.Drain || time.Since(lastChange) > stallCutoff || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	meter.stop()
	var duringErr error
	if during != nil {
		duringErr = <-during
	}
	time.Sleep(250 * time.Millisecond) // duplicates at the edge are counted too
	cutoff := time.Now()
	o.logf("   %s: load %.1f s (%d sent, %d accepted), drained %.1f s later", ph.name, sum.End.Sub(sum.Start).Seconds(), sum.Sent, sum.Accepted, cutoff.Sub(loadEnd).Seconds())
	profWG.Wait()

	span := cutoff.Sub(sum.Start)
	bucket := pickBucket(span)
	var dead []DeadLetter
	for _, e := range dlq.Entries(prefix) {
		dead = append(dead, DeadLetter{EventID: e.EventID, Key: topo.epKey[e.EndpointID], Reason: e.Reason})
	}
	an := ledger.Reconcile(sink.Records(prefix), dead, sum.Start, bucket)
	pr.Ledger = an.Report
	if duringErr != nil {
		pr.Ledger.Void, pr.Ledger.Reasons = true, append(pr.Ledger.Reasons, "during the load: "+duringErr.Error())
	}
	pr.Traffic = meter.traffic(an.Report.Delivered)
	pr.LatencyMs = an.Latency.Summary()
	pr.FromAckMs = an.FromAck.Summary()
	pr.Series = an.Series
	pr.BucketSeconds = bucket.Seconds()
	wall := cutoff.Sub(sum.Start)
	if !an.LastDelivery.IsZero() && an.LastDelivery.After(sum.Start) {
		wall = an.LastDelivery.Sub(sum.Start)
		pr.DeliveredPerSec = float64(an.Report.Delivered) / wall.Seconds()
	}
	pr.WallSeconds = wall.Seconds()
	if baselinePS > 0 {
		pr.RatioToBaseline = pr.DeliveredPerSec / baselinePS
	}
	phaseWall := cutoff.Sub(sum.Start).Seconds()
	for _, p := range st.Procs {
		after, ok := ReadProc(p.Pid())
		if !ok {
			continue
		}
		cpu := after.CPUSeconds - before[p].CPUSeconds
		pr.Processes = append(pr.Processes, ProcFigures{Name: p.Name, Herald: p.Herald, CPUSeconds: round2(cpu),
			CPUPercent: round2(100 * cpu / phaseWall), PeakRSSMiB: round2(float64(after.PeakRSS) / mib)})
	}
	if d := float64(an.Report.Delivered); d > 0 {
		var cpu float64
		for i, p := range pr.Processes {
			cpu += p.CPUSeconds
			pr.Processes[i].CPUMicros = math.Round(p.CPUSeconds * 1e6 / d)
		}
		pr.DeployCPUMicros = math.Round(cpu * 1e6 / d)
		if o.PprofDir != "" {
			pr.StageMicros = stageMicros(pr.Processes, profiles)
		}
	}
	if self1, ok := ReadProc(os.Getpid()); ok {
		cpu := self1.CPUSeconds - self0.CPUSeconds
		if d := float64(an.Report.Delivered); d > 0 {
			pr.BenchCPUMicros = math.Round(cpu * 1e6 / d)
		}
		pr.Processes = append(pr.Processes, ProcFigures{Name: BenchProc, CPUSeconds: round2(cpu),
			CPUPercent: round2(100 * cpu / phaseWall), PeakRSSMiB: round2(float64(self1.PeakRSS) / mib), CPUMicros: pr.BenchCPUMicros})
	}
	if len(sc.Sizes) > 1 {
		for i, c := range sc.Sizes {
			sf := SizeFigures{Bytes: c.Bytes, Statuses: map[string]int{}}
			if i < len(an.AcceptedBySize) {
				sf.Accepted, sf.Refused = an.AcceptedBySize[i], an.RefusedBySize[i]
				sf.LatencyMs = an.BySize[i].Summary()
			}
			for k, n := range statuses {
				if k.size == i {
					sf.Statuses[fmt.Sprint(k.code)] += n
					if d := details[k]; d != "" && sf.Refusal == "" {
						sf.Refusal = fmt.Sprintf("HTTP %d: %s", k.code, d)
						if o.Via == ModeNATS {
							sf.Refusal = "publish to JetStream failed: " + d
						}
					}
				}
			}
			pr.BySize = append(pr.BySize, sf)
		}
	}
	return pr
}

// stallCutoff ends the drain when nothing was delivered or dead-lettered
// for this long: longer than Herald's first retry wait (5 s ± 20 %).
const stallCutoff = 10 * time.Second

func pickBucket(span time.Duration) time.Duration {
	for _, b := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second} {
		if span/b <= 60 {
			return b
		}
	}
	return 10 * time.Second
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

func fetchProfile(ctx context.Context, addr string, secs int, path string) error {
	c := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(secs, 1)), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", addr, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// notes say in words what a reader of the figures must know.
func notes(sc Scenario, r *RunResult) []string {
	var out []string
	m := r.Main
	if len(m.Load.Refused) > 0 && len(sc.Sizes) <= 1 {
		var parts []string
		for code, n := range m.Load.Refused {
			what := "HTTP " + code
			if m.Load.Mode == ModeNATS || code == "0" {
				what = "failed"
			}
			parts = append(parts, fmt.Sprintf("%d× %s (%s)", n, what, short(m.Load.RefusalDetail[code])))
		}
		sort.Strings(parts)
		out = append(out, "Herald refused events: "+strings.Join(parts, ", ")+"; refused events are not expected anywhere")
	}
	for _, sf := range m.BySize {
		switch {
		case sf.Refused > 0:
			out = append(out, fmt.Sprintf("%s events: Herald refused %d of %d (%s). Large-payload support is being built separately; refused events are left out of the ledger and the figures",
				humanBytes(sf.Bytes), sf.Refused, sf.Accepted+sf.Refused, short(sf.Refusal)))
		case sf.Bytes >= mib && sf.Accepted > 0:
			out = append(out, fmt.Sprintf("%s events: all %d accepted (HERALD_MAX_EVENT_BYTES=%d), %d delivered; p50 %s ms, p99 %s ms",
				humanBytes(sf.Bytes), sf.Accepted, sc.MaxEventBytes, sf.LatencyMs.Count, fmtMs(sf.LatencyMs.P50), fmtMs(sf.LatencyMs.P99)))
		}
	}
	for _, ph := range phasesOf(*r) {
		if n := ph.Ledger.MissingFailing; n > 0 {
			out = append(out, fmt.Sprintf("%s: %d deliveries to the failing endpoints (blackhole, first attempts failed) were neither delivered nor dead-lettered at the cut-off: Herald still held them (retry wait or open breaker)", ph.Name, n))
		}
	}
	if r.Control != nil && r.Control.LatencyMs.P99 > 0 {
		out = append(out, fmt.Sprintf("healthy endpoints' p99 %.1f ms with the blackhole vs %.1f ms without it (%.2f×)",
			m.LatencyMs.P99, r.Control.LatencyMs.P99, m.LatencyMs.P99/r.Control.LatencyMs.P99))
	}
	if m.Load.Late > 0 {
		out = append(out, fmt.Sprintf("open loop fell behind: %d events sent more than 10 ms late (worst %.0f ms)", m.Load.Late, m.Load.MaxLateMs))
	}
	if m.LatencyMs.Negative > 0 {
		out = append(out, fmt.Sprintf("%d deliveries were received before their estimated accepted time (counted as 0 ms)", m.LatencyMs.Negative))
	}
	return out
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

func humanBytes(n int) string {
	switch {
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= kib && n%kib == 0:
		return fmt.Sprintf("%d KiB", n/kib)
	}
	return fmt.Sprintf("%d B", n)
}
