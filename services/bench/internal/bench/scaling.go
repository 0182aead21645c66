package bench

// The scaling scenario: does adding herald-sender processes add
// deliveries per second, and what stops it? Slow receivers make the
// question sharp: a request answered in 50 ms holds a sender worker and
// an endpoint slot for 50 ms, so one sender can carry at most its
// workers / 50 ms, and the endpoints at most endpoints × cap / 50 ms,
// whatever the CPU. The report computes both bounds, the CPU each process
// used while delivering, and names the bound a run hit.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/sender"
)

// scalingScenario: each event fans out to 200 endpoints answering in
// 50 ms, on separate processes with 1, 2 and 4 senders. Fan-out keeps
// ingest and the router cheap per delivery, so the senders, NATS and
// Redis are what is measured. Count is per sender: a run that scales
// linearly lasts as long with 4 senders as with 1.
var scalingScenario = Scenario{
	Name:    "scaling",
	Title:   "senders scaling out: each event to 200 endpoints answering in 50 ms, separate processes with 1, 2 and 4 herald-senders",
	Tenants: 1, Endpoints: 200, Fanout: true, Stall: 50 * time.Millisecond,
	Sizes: []SizeClass{{Bytes: kib, Weight: 1}}, Concurrency: 8, Duration: 30 * time.Second,
	Count: 40, Drain: 90 * time.Second, Senders: []int{1, 2, 4},
}

// scalingSmoke keeps the shape (200 endpoints, 50 ms) with few events.
func scalingSmoke(s *Scenario) { s.Count, s.Concurrency = 5, 4 }

// planned is one run of a scenario on a deployment.
type planned struct {
	sc      Scenario
	dep     Deployer
	senders int // herald-sender processes of a scaling run; 0 otherwise
}

// plan lists the runs of a scenario: one per deployment, except that a
// scenario with Senders runs on the separate deployment only, once per
// sender count, with Count events per sender.
func plan(sc Scenario, deps []Deployer) []planned {
	if len(sc.Senders) == 0 {
		out := make([]planned, len(deps))
		for i, d := range deps {
			out[i] = planned{sc: sc, dep: d}
		}
		return out
	}
	var out []planned
	for _, d := range deps {
		sep, ok := d.(Separate)
		if !ok {
			continue
		}
		for _, n := range sc.Senders {
			s := sc
			s.Count = sc.Count * n
			sep.Senders, sep.Label = n, strings.Replace(ScalingLabel(n), "separate", d.Name(), 1)
			out = append(out, planned{sc: s, dep: sep, senders: n})
		}
	}
	return out
}

// ScalingLabel names the separate deployment with n senders.
func ScalingLabel(n int) string {
	if n == 1 {
		return "separate, 1 sender"
	}
	return fmt.Sprintf("separate, %d senders", n)
}

// Traffic is what a load phase cost the shared servers, read from Redis's
// INFO commandstats and nats-server's /varz before and after it, how busy
// the senders' workers were, and how busy the whole machine was.
type Traffic struct {
	// SenderInFlight is the mean of jobs in hand (herald_sender_in_flight)
	// summed over the senders, sampled every inFlightEvery until the drain
	// ended.
	SenderInFlight float64 `json:"sender_in_flight,omitempty"`
	// MachineBusy is the share of all the machine's cores busy over the
	// phase, whoever used them (/proc/stat): beside the deployment's own
	// CPU it shows other work on a shared machine.
	MachineBusy float64 `json:"machine_busy,omitempty"`
	// RedisCalls counts commands by name (INFO itself left out).
	RedisCalls            map[string]int64 `json:"redis_calls,omitempty"`
	RedisCallsPerDelivery float64          `json:"redis_calls_per_delivery,omitempty"`
	// RedisMemoryPerDelivery is the growth of Redis's used_memory per
	// delivery: mostly the attempt history index, kept for the retention.
	RedisMemoryPerDelivery float64 `json:"redis_memory_bytes_per_delivery,omitempty"`
	// NATS messages and bytes into and out of the server (every client:
	// publishes, deliveries to consumers, acks, API requests).
	NATSInMsgs           int64   `json:"nats_in_msgs,omitempty"`
	NATSOutMsgs          int64   `json:"nats_out_msgs,omitempty"`
	NATSInBytes          int64   `json:"nats_in_bytes,omitempty"`
	NATSOutBytes         int64   `json:"nats_out_bytes,omitempty"`
	NATSMsgsPerDelivery  float64 `json:"nats_msgs_per_delivery,omitempty"`
	NATSBytesPerDelivery float64 `json:"nats_bytes_per_delivery,omitempty"`
	// Senders counts, summed over every process that sends (the
	// all-in-one too), what the senders did besides delivering, per
	// delivery: jobs put back without an attempt (a cap's or rate limit's
	// refusal, as a delayed nak) and jobs handed a slot in process after
	// a refusal. They show the cap's churn where no server can be read.
	Senders map[string]float64 `json:"sender_counts_per_delivery,omitempty"`
	// AttemptsPerDelivery and AttemptMeanMs are the senders' HTTP attempts
	// (herald_attempt_duration_seconds) per delivery and their mean
	// duration. Beside a cap's slots and the throughput they say how much
	// of a slot's turn (cap ÷ deliveries/s) is the request itself.
	AttemptsPerDelivery float64 `json:"attempts_per_delivery,omitempty"`
	AttemptMeanMs       float64 `json:"attempt_mean_ms,omitempty"`
}

// senderCounters are the sender metrics Traffic counts, by the name it
// reports them under.
var senderCounters = map[string]string{
	"refused":  `herald_sender_delayed_total{reason="concurrency"}`,
	"rated":    `herald_sender_delayed_total{reason="rate"}`,
	"handoffs": `herald_sender_handoffs_total`,
}

// attemptSeries are the attempt histogram's count and sum, read like
// senderCounters but reported apart (see Traffic.AttemptMeanMs).
var attemptSeries = map[string]string{
	"count": `herald_attempt_duration_seconds_count`,
	"sum":   `herald_attempt_duration_seconds_sum`,
}

// processSeries is every series a sample reads from a Herald process's
// /metrics page (senderCounters and attemptSeries; their keys differ), so
// that the page is read once.
var processSeries = func() map[string]string {
	m := map[string]string{}
	for _, from := range []map[string]string{senderCounters, attemptSeries} {
		for k, v := range from {
			m[k] = v
		}
	}
	return m
}()

type trafficSample struct {
	redis    map[string]int64 // calls by command, and "used_memory" in bytes
	nats     *natsVarz
	cpu      cpuTimes
	senders  map[string]float64 // senderCounters, summed over the processes
	attempts map[string]float64 // attemptSeries, summed likewise
}

// meter measures a load phase: the counters before and when the drain
// ends, and the senders' jobs in hand in between.
type meter struct {
	st     *Stack
	t0, t1 trafficSample
	cancel context.CancelFunc
	done   chan float64
	inHand float64
}

// inFlightEvery is how often the meter reads each sender's /metrics page
// for its jobs in hand. Each read renders the whole page, which the sender
// pays for: every 100 ms it was 8 % of a sender's CPU in single on separate
// processes, counted in its CPU per delivery as if delivering cost it. Every
// 500 ms it is 1-2 %, and a load of a few seconds still gets several
// samples. (A Prometheus server scrapes every 15-60 s.)
const inFlightEvery = 500 * time.Millisecond

// startMeter takes the first sample and starts sampling the senders.
func startMeter(ctx context.Context, st *Stack) *meter {
	m := &meter{st: st, t0: readTraffic(st), done: make(chan float64, 1)}
	ctx, m.cancel = context.WithCancel(ctx)
	var senders []string
	for _, p := range st.Procs {
		if p.Herald && p.URL != "" && strings.HasPrefix(p.Name, "herald-sender") {
			senders = append(senders, p.URL+"/metrics")
		}
	}
	go func() {
		var sum float64
		n := 0
		t := time.NewTicker(inFlightEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				if n == 0 {
					m.done <- 0
				} else {
					m.done <- sum / float64(n)
				}
				return
			case <-t.C:
			}
			for _, u := range senders {
				if v, err := gauge(u, "herald_sender_in_flight"); err == nil {
					sum += v
				}
			}
			if len(senders) > 0 {
				n++
			}
		}
	}()
	return m
}

// stop takes the last sample, when the drain has ended.
func (m *meter) stop() {
	m.cancel()
	m.inHand = <-m.done
	m.t1 = readTraffic(m.st)
}

// traffic is the phase's Traffic; nil when nothing was read.
func (m *meter) traffic(delivered int) *Traffic {
	t := m.t1.since(m.t0, delivered)
	if t != nil {
		t.SenderInFlight = round2(m.inHand)
		t.MachineBusy = m.t1.cpu.busySince(m.t0.cpu)
	}
	return t
}

// cpuTimes are the machine's CPU times (/proc/stat's first line, in
// ticks): busy and all.
type cpuTimes struct{ busy, total int64 }

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var c cpuTimes
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest times are already in user and nice
			break
		}
		c.total += n
		if i != 3 && i != 4 { // idle, iowait
			c.busy += n
		}
	}
	return c
}

func (c cpuTimes) busySince(c0 cpuTimes) float64 {
	if c.total <= c0.total {
		return 0
	}
	return round2(float64(c.busy-c0.busy) / float64(c.total-c0.total))
}

// gauge reads one unlabelled metric from a Prometheus text page.
func gauge(url, name string) (float64, error) {
	resp, err := probe.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}

// counters reads the metrics of a Prometheus text page whose series
// (name and labels, as printed) are the values of want, by want's keys;
// missing series are 0.
func counters(url string, want map[string]string) (map[string]float64, error) {
	resp, err := probe.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	by := make(map[string]string, len(want))
	for k, series := range want {
		by[series] = k
	}
	out := make(map[string]float64, len(want))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		series, v, ok := strings.Cut(sc.Text(), " ")
		if k, hit := by[series]; ok && hit {
			out[k], _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return out, sc.Err()
}

type natsVarz struct {
	InMsgs   int64 `json:"in_msgs"`
	OutMsgs  int64 `json:"out_msgs"`
	InBytes  int64 `json:"in_bytes"`
	OutBytes int64 `json:"out_bytes"`
}

// readTraffic samples the stack's Redis and NATS counters, where it knows
// them; what cannot be read is left out.
func readTraffic(st *Stack) trafficSample {
	s := trafficSample{cpu: readCPUTimes()}
	for _, p := range st.Procs {
		if !p.Herald || p.URL == "" {
			continue
		}
		v, err := counters(p.URL+"/metrics", processSeries)
		if err != nil {
			continue
		}
		s.senders = addCounters(s.senders, v, senderCounters)
		s.attempts = addCounters(s.attempts, v, attemptSeries)
	}
	if st.RedisAddr != "" {
		s.redis, _ = redisInfo(st.RedisAddr)
	}
	for _, mon := range st.NATSMonitors { // summed over a cluster's nodes
		var v natsVarz
		if err := getJSON(mon+"/varz", &v); err != nil {
			s.nats = nil
			break
		}
		if s.nats == nil {
			s.nats = &natsVarz{}
		}
		s.nats.InMsgs, s.nats.OutMsgs = s.nats.InMsgs+v.InMsgs, s.nats.OutMsgs+v.OutMsgs
		s.nats.InBytes, s.nats.OutBytes = s.nats.InBytes+v.InBytes, s.nats.OutBytes+v.OutBytes
	}
	return s
}

// since is the traffic from s0 to s, per delivery too; nil when nothing
// was read.
func (s trafficSample) since(s0 trafficSample, delivered int) *Traffic {
	if s.redis == nil && s.nats == nil && s.cpu.total == 0 && s.senders == nil && s.attempts == nil {
		return nil
	}
	t := &Traffic{}
	per := func(n int64) float64 {
		if delivered == 0 {
			return 0
		}
		return round2(float64(n) / float64(delivered))
	}
	if s.redis != nil && s0.redis != nil {
		t.RedisCalls = map[string]int64{}
		var sum int64
		for cmd, n := range s.redis {
			if cmd == usedMemory {
				t.RedisMemoryPerDelivery = per(n - s0.redis[cmd])
				continue
			}
			if d := n - s0.redis[cmd]; d > 0 && cmd != "info" {
				t.RedisCalls[cmd] = d
				sum += d
			}
		}
		t.RedisCallsPerDelivery = per(sum)
	}
	if s.nats != nil && s0.nats != nil {
		t.NATSInMsgs, t.NATSOutMsgs = s.nats.InMsgs-s0.nats.InMsgs, s.nats.OutMsgs-s0.nats.OutMsgs
		t.NATSInBytes, t.NATSOutBytes = s.nats.InBytes-s0.nats.InBytes, s.nats.OutBytes-s0.nats.OutBytes
		t.NATSMsgsPerDelivery = per(t.NATSInMsgs + t.NATSOutMsgs)
		t.NATSBytesPerDelivery = per(t.NATSInBytes + t.NATSOutBytes)
	}
	if s.senders != nil && s0.senders != nil && delivered > 0 {
		t.Senders = map[string]float64{}
		for k, n := range s.senders {
			t.Senders[k] = round2((n - s0.senders[k]) / float64(delivered))
		}
	}
	if s.attempts != nil && s0.attempts != nil && delivered > 0 {
		if n := s.attempts["count"] - s0.attempts["count"]; n > 0 {
			t.AttemptsPerDelivery = round2(n / float64(delivered))
			t.AttemptMeanMs = round2((s.attempts["sum"] - s0.attempts["sum"]) / n * 1000)
		}
	}
	return t
}

// addCounters adds to into (made when nil) the values in v of want's keys
// that the page had.
func addCounters(into, v map[string]float64, want map[string]string) map[string]float64 {
	if into == nil {
		into = map[string]float64{}
	}
	for k := range want {
		if n, ok := v[k]; ok {
			into[k] += n
		}
	}
	return into
}

// usedMemory is the key of Redis's used_memory in what redisInfo returns.
const usedMemory = "used_memory"

// redisInfo reads INFO: calls per command (commandstats), and
// used_memory.
func redisInfo(addr string) (map[string]int64, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "INFO all\r\n"); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(head, "$") {
		return nil, fmt.Errorf("redis answered %q", strings.TrimSpace(head))
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return nil, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return parseCommandStats(string(body)), nil
}

// parseCommandStats reads lines "cmdstat_evalsha:calls=12,usec=..." and
// "used_memory:1234".
func parseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && name == usedMemory {
			out[usedMemory], _ = strconv.ParseInt(rest, 10, 64)
		}
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out
}

func getJSON(url string, v any) error {
	resp, err := probe.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// ScalingRow is one run of the scaling scenario, worked out.
type ScalingRow struct {
	Deployment  string // "separate, 2 senders"
	Senders     int
	PerSec      float64 // deliveries/s
	Speedup     float64 // over the run with the fewest senders, per sender
	SlotBound   float64 // senders × workers / stall
	CapBound    float64 // endpoints × cap / stall
	MachineCPU  float64 // share of all cores the deployment and the bench used while delivering, 0..1
	MachineBusy float64 // share of all cores busy, whoever used them, 0..1
	SlotUse     float64 // mean share of the senders' workers holding a job, 0..1
	JobMs       float64 // how long a job held its worker: jobs in hand / deliveries per second
	Procs       []ProcFigures
	SenderMicro float64 // CPU µs of all senders per delivery
	TotalMicro  float64 // CPU µs of every process of the deployment per delivery
	Traffic     *Traffic
	Bound       string
	Void        bool
}

// ScalingSettings are the settings that bound a slow receiver's
// throughput: Herald's defaults unless env (KEY=VALUE, as passed to every
// Herald process) sets them.
func ScalingSettings(env []string) (workers, endpointCap int) {
	workers, endpointCap = sender.DefaultWorkers, limit.DefaultConcurrency
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			continue
		}
		switch k {
		case "HERALD_SENDER_WORKERS":
			workers = n
		case "HERALD_ENDPOINT_CONCURRENCY":
			endpointCap = n
		}
	}
	return workers, endpointCap
}

// Scaling works out the scaling scenario's runs, in sender order; env is
// what every Herald process was given.
func Scaling(runs []RunResult, env []string) []ScalingRow {
	workers, endpointCap := ScalingSettings(env)
	sc := scalingScenario
	var rows []ScalingRow
	for _, r := range runs {
		if r.Scenario != sc.Name || r.Senders == 0 || r.Error != "" {
			continue
		}
		m := r.Main
		row := ScalingRow{Deployment: r.Deployment, Senders: r.Senders, PerSec: m.DeliveredPerSec, Traffic: m.Traffic, Void: r.Void,
			SlotBound:  float64(r.Senders*workers) / sc.Stall.Seconds(),
			CapBound:   float64(sc.Endpoints*endpointCap) / sc.Stall.Seconds(),
			TotalMicro: m.DeployCPUMicros}
		// CPU over the delivering, not the drain's tail.
		wall := m.WallSeconds
		var busy, senders float64
		for _, p := range m.Processes {
			q := p
			if wall > 0 {
				q.CPUPercent = round2(100 * p.CPUSeconds / wall)
			}
			row.Procs = append(row.Procs, q)
			busy += p.CPUSeconds
			if strings.HasPrefix(p.Name, "herald-sender") {
				senders += p.CPUSeconds
			}
		}
		if wall > 0 {
			row.MachineCPU = busy / wall / float64(runtime.NumCPU())
		}
		if d := m.Ledger.Delivered; d > 0 {
			row.SenderMicro = senders * 1e6 / float64(d)
		}
		if t := m.Traffic; t != nil {
			row.MachineBusy = t.MachineBusy
			row.SlotUse = t.SenderInFlight / float64(r.Senders*workers)
			if row.PerSec > 0 {
				row.JobMs = 1000 * t.SenderInFlight / row.PerSec
			}
		}
		row.Bound = row.bound()
		rows = append(rows, row)
	}
	// Each deployment (separate, separate-r3) apart, by sender count; the
	// speedup is over its run with the fewest senders.
	base := func(r ScalingRow) string { b, _, _ := strings.Cut(r.Deployment, ","); return b }
	sort.SliceStable(rows, func(i, j int) bool {
		if bi, bj := base(rows[i]), base(rows[j]); bi != bj {
			return bi < bj
		}
		return rows[i].Senders < rows[j].Senders
	})
	for i := range rows {
		first := rows[i]
		for j := i; j >= 0 && base(rows[j]) == base(rows[i]); j-- {
			first = rows[j]
		}
		if first.PerSec > 0 {
			rows[i].Speedup = rows[i].PerSec / first.PerSec * float64(first.Senders)
		}
	}
	return rows
}

// bound names what limited the run. The senders' workers, if 80 % of
// them held a job on average and each held it little longer than the
// receiver took (1.5 × 50 ms; Little's law gives the time: jobs in hand /
// deliveries per second): they waited for receivers. Workers as busy but
// holding jobs longer were waiting for the CPU: with the machine's cores
// 85 % busy that is the bound, and it says how much of the CPU was the
// deployment's and the bench's and how much other work on the machine.
// Then the endpoints' cap if the run came within 80 % of it, and Redis if
// its one thread was 90 % busy; else nothing measured here.
func (r ScalingRow) bound() string {
	procs := slices.Clone(r.Procs)
	sort.Slice(procs, func(i, j int) bool { return procs[i].CPUPercent > procs[j].CPUPercent })
	var top []string
	for _, p := range procs[:min(3, len(procs))] {
		top = append(top, fmt.Sprintf("%s %.0f %%", p.Name, p.CPUPercent))
	}
	cores := runtime.NumCPU()
	machine := fmt.Sprintf("the machine's %d cores %.0f %% busy (the deployment and the bench %.0f %%, other work %.0f %%)",
		cores, 100*r.MachineBusy, 100*r.MachineCPU, max(0, 100*(r.MachineBusy-r.MachineCPU)))
	stall := 1000 * scalingScenario.Stall.Seconds()
	hot := r.MachineBusy >= 0.85 || r.MachineCPU >= 0.85
	switch {
	case r.SlotUse >= 0.8 && (r.JobMs <= 1.5*stall || !hot):
		return fmt.Sprintf("worker slots: %.0f %% of the senders' workers busy, a job holding one %.0f ms (%.0f ms at the receiver)", 100*r.SlotUse, r.JobMs, stall)
	case r.SlotUse >= 0.8:
		return fmt.Sprintf("CPU: %s; the workers are %.0f %% busy but a job holds one %.0f ms, %.0f ms more than the receiver takes: waiting for the CPU; most: %s",
			machine, 100*r.SlotUse, r.JobMs, r.JobMs-stall, strings.Join(top, ", "))
	case r.PerSec >= 0.8*r.CapBound:
		return fmt.Sprintf("endpoint cap: 200 endpoints × cap / 50 ms = %s/s", fmtRate(r.CapBound))
	}
	for _, p := range procs {
		if p.Name == "redis-server" && p.CPUPercent >= 90 {
			return fmt.Sprintf("CPU of redis-server, single-threaded (%.0f %% of a core)", p.CPUPercent)
		}
	}
	if hot {
		return fmt.Sprintf("CPU: %s; most: %s; %.0f %% of the workers busy", machine, strings.Join(top, ", "), 100*r.SlotUse)
	}
	return fmt.Sprintf("none of these: %s; %.0f %% of the workers busy; most CPU: %s", machine, 100*r.SlotUse, strings.Join(top, ", "))
}

func (r ScalingRow) redisLine() string {
	if r.Traffic == nil || len(r.Traffic.RedisCalls) == 0 {
		return "-"
	}
	type kv struct {
		k string
		n int64
	}
	var cmds []kv
	for k, n := range r.Traffic.RedisCalls {
		cmds = append(cmds, kv{k, n})
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].n > cmds[j].n })
	var parts []string
	total := r.Traffic.RedisCallsPerDelivery
	var sum int64
	for _, c := range cmds {
		sum += c.n
	}
	for _, c := range cmds[:min(4, len(cmds))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", strings.ToUpper(c.k), total*float64(c.n)/float64(sum)))
	}
	return strings.Join(parts, ", ")
}

func (r ScalingRow) procLine() string {
	var parts []string
	for _, p := range r.Procs {
		parts = append(parts, fmt.Sprintf("%s %.0f %%", p.Name, p.CPUPercent))
	}
	return strings.Join(parts, ", ")
}

// PrintScaling writes the scaling table, if runs hold the scenario.
func PrintScaling(w io.Writer, runs []RunResult, env []string) {
	rows := Scaling(runs, env)
	if len(rows) == 0 {
		return
	}
	workers, endpointCap := ScalingSettings(env)
	fmt.Fprintf(w, "\nScaling senders (200 endpoints answering in 50 ms; %d workers per sender, cap %d per endpoint; %d CPUs):\n", workers, endpointCap, runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "deployment\tdelivered/s\tspeedup\tworkers busy\tjob ms\tslot bound/s\tcap bound/s\tCPU: ours/machine\tsender µs/delivery\tall µs/delivery\tRedis cmds/delivery\tNATS msgs/delivery\t")
	for _, r := range rows {
		redis, nats := "-", "-"
		if r.Traffic != nil {
			redis, nats = fmt.Sprintf("%.2f", r.Traffic.RedisCallsPerDelivery), fmt.Sprintf("%.1f", r.Traffic.NATSMsgsPerDelivery)
		}
		void := ""
		if r.Void {
			void = " VOID"
		}
		fmt.Fprintf(tw, "%s\t%s%s\t%.2f×\t%.0f %%\t%.0f\t%s\t%s\t%.0f/%.0f %%\t%.0f\t%.0f\t%s\t%s\t\n", r.Deployment, fmtRate(r.PerSec), void, r.Speedup,
			100*r.SlotUse, r.JobMs, fmtRate(r.SlotBound), fmtRate(r.CapBound), 100*r.MachineCPU, 100*r.MachineBusy, r.SenderMicro, r.TotalMicro, redis, nats)
	}
	tw.Flush()
	for _, r := range rows {
		fmt.Fprintf(w, "  %s: bound: %s\n", r.Deployment, r.Bound)
		fmt.Fprintf(w, "     CPU while delivering (%% of one core): %s\n", r.procLine())
		fmt.Fprintf(w, "     Redis commands per delivery (those run inside scripts included): %s\n", r.redisLine())
		if r.Traffic != nil {
			fmt.Fprintf(w, "     Redis memory per delivery: %+.0f bytes; NATS bytes per delivery: %.0f\n", r.Traffic.RedisMemoryPerDelivery, r.Traffic.NATSBytesPerDelivery)
		}
	}
}

// ScalingMarkdown is the scaling table for a document; "" without the
// scenario.
func ScalingMarkdown(runs []RunResult, env []string) string {
	rows := Scaling(runs, env)
	if len(rows) == 0 {
		return ""
	}
	workers, endpointCap := ScalingSettings(env)
	var b strings.Builder
	fmt.Fprintf(&b, "\nScaling senders: 200 endpoints answering in 50 ms, %d workers per sender, cap %d per endpoint, %d CPUs. "+
		"Speedup is deliveries/s over the 1-sender run's; workers busy is the mean share of the senders' workers holding a job, "+
		"job ms how long each held one (Little's law); CPU is over the time spent delivering: ours is the deployment's and the bench's processes, "+
		"machine is every process on the machine; Redis commands include those run inside scripts.\n\n", workers, endpointCap, runtime.NumCPU())
	b.WriteString("| deployment | delivered/s | speedup | workers busy | job ms | slot bound/s | cap bound/s | CPU ours / machine | sender µs/delivery | all µs/delivery | Redis cmds/delivery | NATS msgs/delivery | bound | CPU per process (% of a core) |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n")
	for _, r := range rows {
		redis, nats := "", ""
		if r.Traffic != nil {
			redis, nats = fmt.Sprintf("%.2f (%s)", r.Traffic.RedisCallsPerDelivery, r.redisLine()), fmt.Sprintf("%.1f", r.Traffic.NATSMsgsPerDelivery)
		}
		per := fmtRate(r.PerSec)
		if r.Void {
			per += " **VOID**"
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f× | %.0f %% | %.0f | %s | %s | %.0f / %.0f %% | %.0f | %.0f | %s | %s | %s | %s |\n", r.Deployment, per, r.Speedup,
			100*r.SlotUse, r.JobMs, fmtRate(r.SlotBound), fmtRate(r.CapBound), 100*r.MachineCPU, 100*r.MachineBusy, r.SenderMicro, r.TotalMicro, redis, nats, r.Bound, r.procLine())
	}
	return b.String()
}
