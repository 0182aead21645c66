package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Machine describes where a bench ran.
type Machine struct {
	CPUs      int     `json:"cpus"`
	Model     string  `json:"model"`
	MemoryGiB float64 `json:"memory_gib"`
	Kernel    string  `json:"kernel,omitempty"`
	Go        string  `json:"go"`
	// LoadAvg is /proc/loadavg when the bench started: anything well above
	// zero means something else was running.
	LoadAvg string `json:"loadavg,omitempty"`
}

// ReadMachine reads the machine's description from /proc.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				m.MemoryGiB = math.Round(float64(kibLine(line))/(1<<30)*10) / 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// Busy reports whether the 1-minute load average at the start exceeded
// half the CPUs: something else was running, and the figures are noisy.
func (m Machine) Busy() bool {
	f := strings.Fields(m.LoadAvg)
	if len(f) == 0 {
		return false
	}
	l, err := strconv.ParseFloat(f[0], 64)
	return err == nil && l > float64(m.CPUs)/2
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %.1f GiB, Linux %s, %s, load average at start %s", m.CPUs, m.Model, m.MemoryGiB, m.Kernel, m.Go, m.LoadAvg)
}

// ScenarioFile is what bench/results/<date>-<scenario>.json holds.
type ScenarioFile struct {
	Scenario string      `json:"scenario"`
	Title    string      `json:"title"`
	Date     string      `json:"date"`
	Finished time.Time   `json:"finished"`
	Machine  Machine     `json:"machine"`
	Command  string      `json:"command"`
	Via      Mode        `json:"via"`
	Runs     []RunResult `json:"runs"`
	Goals    []Goal      `json:"goals,omitempty"`
}

// WriteScenario writes <dir>/<date>-<scenario>.json and .svg.
func WriteScenario(dir string, f ScenarioFile) (jsonPath, svgPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, f.Date+"-"+f.Scenario)
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := writeAtomic(base+".json", append(b, '\n')); err != nil {
		return "", "", err
	}
	if err := writeAtomic(base+".svg", ScenarioChart(f).SVG()); err != nil {
		return "", "", err
	}
	return base + ".json", base + ".svg", nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var deployColors = map[string]string{"all-in-one": "#1f77b4", "separate": "#d62728"}

func colorOf(dep string, i int) string {
	if c, ok := deployColors[dep]; ok {
		return c
	}
	return []string{"#2ca02c", "#9467bd", "#8c564b"}[i%3]
}

// ScenarioChart draws a scenario's runs: delivered/s (and accepted/s,
// faint) over time beside each deployment's baseline, and p99 latency over
// time.
func ScenarioChart(f ScenarioFile) Chart {
	c := Chart{Title: fmt.Sprintf("Herald bench: %s, %s", f.Scenario, f.Date), XLabel: "seconds from the start of the load"}
	c.Subtitle = append(c.Subtitle, f.Title)
	thr := Panel{Title: "deliveries/s (accepted/s faint; dotted: baseline, signed POSTs straight to the sink)"}
	lat := Panel{Title: "p99 latency, ms, accepted → received, per time bucket"}
	spread := [2]float64{math.Inf(1), 0}
	for i, r := range f.Runs {
		col := colorOf(r.Deployment, i)
		if r.Error != "" {
			c.Subtitle = append(c.Subtitle, fmt.Sprintf("%s: run failed: %s", r.Deployment, short(r.Error)))
			continue
		}
		status := ""
		if r.Void {
			status = "  *** VOID: " + short(strings.Join(r.VoidReasons, "; "))
		}
		c.Subtitle = append(c.Subtitle, fmt.Sprintf("%s: %s delivered/s = %.2f× baseline %s/s; p50 %s, p99 %s, max %s ms%s",
			r.Deployment, fmtRate(r.Main.DeliveredPerSec), r.Main.RatioToBaseline, fmtRate(r.Baseline.RequestsPerSec),
			fmtMs(r.Main.LatencyMs.P50), fmtMs(r.Main.LatencyMs.P99), fmtMs(r.Main.LatencyMs.Max), status))
		phases := []*PhaseResult{&r.Main}
		if r.Control != nil {
			phases = append([]*PhaseResult{r.Control}, phases...)
			c.Subtitle = append(c.Subtitle, fmt.Sprintf("%s without the blackhole (control, dashed): p99 %s ms", r.Deployment, fmtMs(r.Control.LatencyMs.P99)))
		}
		for _, ph := range phases {
			label := r.Deployment
			dashed := ph.Name == "control"
			if dashed {
				label += " (control)"
			}
			var acc, del, p99 [][2]float64
			for _, p := range ph.Series {
				x := p.T + ph.BucketSeconds/2
				acc = append(acc, [2]float64{x, p.AcceptedPS})
				del = append(del, [2]float64{x, p.DeliverPS})
				if p.P99Ms > 0 {
					p99 = append(p99, [2]float64{x, p.P99Ms})
					spread[0], spread[1] = min(spread[0], p.P99Ms), max(spread[1], p.P99Ms)
				}
			}
			thr.Lines = append(thr.Lines, Line{Label: label + " delivered/s", Color: col, Dashed: dashed, Points: del})
			thr.Lines = append(thr.Lines, Line{Label: label + " accepted/s", Color: col, Faint: true, Dashed: dashed, Points: acc})
			lat.Lines = append(lat.Lines, Line{Label: label + " p99", Color: col, Dashed: dashed, Points: p99, Markers: len(p99) < 30})
		}
		thr.HLines = append(thr.HLines, HLine{Y: r.Baseline.RequestsPerSec, Color: col,
			Label: fmt.Sprintf("%s baseline %s/s", r.Deployment, fmtRate(r.Baseline.RequestsPerSec))})
	}
	lat.Log = spread[1] > 30*spread[0]
	c.Subtitle = append(c.Subtitle, fmt.Sprintf("machine: %d CPUs, %s; %s", f.Machine.CPUs, f.Machine.Model, f.Via))
	c.Panels = []Panel{thr, lat}
	return c
}

func fmtRate(v float64) string {
	switch {
	case v >= 100:
		return commas(int64(math.Round(v)))
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return commas(int64(math.Round(v)))
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + commas(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Goal is one of the targets, judged against a run.
type Goal struct {
	Goal   string `json:"goal"`
	Actual string `json:"actual"`
	// Met is "yes", "no", or "n/a" (void, failed or not run).
	Met string `json:"met"`
}

// Goals judges the results against Herald's goals. They are reported, not
// asserted.
func Goals(runs []RunResult) []Goal {
	var out []Goal
	judge := func(r RunResult, ok bool) string {
		switch {
		case r.Error != "" || r.Void:
			return "n/a (void)"
		case ok:
			return "yes"
		}
		return "no"
	}
	maxSender := map[string]float64{}
	for _, r := range runs {
		switch r.Scenario {
		case "single":
			out = append(out, Goal{Goal: "single on " + r.Deployment + ": deliveries/s >= 60 % of the same run's baseline",
				Actual: fmt.Sprintf("%s/s of %s/s = %.0f %%", fmtRate(r.Main.DeliveredPerSec), fmtRate(r.Baseline.RequestsPerSec), 100*r.Main.RatioToBaseline),
				Met:    judge(r, r.Main.RatioToBaseline >= 0.6)})
		case "latency":
			if r.Deployment == "all-in-one" {
				out = append(out, Goal{Goal: "latency on all-in-one: p99 accepted->received < 25 ms at 1,000 events/s",
					Actual: fmt.Sprintf("p99 %s ms at %s accepted/s", fmtMs(r.Main.LatencyMs.P99), fmtRate(r.Main.Load.AcceptedPerSec)),
					Met:    judge(r, r.Main.LatencyMs.P99 < 25 && r.Main.LatencyMs.Count > 0)})
			}
		case "blackhole":
			if r.Control != nil {
				ratio := r.Main.LatencyMs.P99 / r.Control.LatencyMs.P99
				out = append(out, Goal{Goal: "blackhole on " + r.Deployment + ": healthy p99 within 1.5× of the run without it",
					Actual: fmt.Sprintf("%s ms vs %s ms = %.2f×", fmtMs(r.Main.LatencyMs.P99), fmtMs(r.Control.LatencyMs.P99), ratio),
					Met:    judge(r, ratio <= 1.5)})
			}
		}
		for _, ph := range []*PhaseResult{&r.Main, r.Control} {
			if ph == nil {
				continue
			}
			for _, p := range ph.Processes {
				if strings.HasPrefix(p.Name, "herald-sender") || p.Name == "herald" {
					maxSender[p.Name+" ("+r.Deployment+")"] = max(maxSender[p.Name+" ("+r.Deployment+")"], p.PeakRSSMiB)
				}
			}
		}
	}
	if len(maxSender) > 0 {
		worst, name := 0.0, ""
		var all []string
		for n, v := range maxSender {
			all = append(all, fmt.Sprintf("%s %.0f MiB", n, v))
			if strings.HasPrefix(n, "herald-sender") && v > worst {
				worst, name = v, n
			}
		}
		if name != "" {
			out = append(out, Goal{Goal: "every herald-sender under 150 MiB RSS (peak, any scenario)",
				Actual: fmt.Sprintf("worst %s %.0f MiB", name, worst), Met: map[bool]string{true: "yes", false: "no"}[worst < 150]})
		}
	}
	return out
}

// PrintTable writes the results as a text table, then each run's
// processes, then the goals.
func PrintTable(w io.Writer, runs []RunResult) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tdeployment\taccepted/s\tdelivered/s\tbaseline/s\tratio\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tdups\tdead\tmissing\tledger\t")
	for _, r := range runs {
		for _, ph := range phasesOf(r) {
			name := r.Scenario
			if ph.Name == "control" {
				name += " (control)"
			}
			if r.Error != "" {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tFAILED\t\n", name, r.Deployment)
				continue
			}
			l := ph.LatencyMs
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t\n", name, r.Deployment,
				fmtRate(ph.Load.AcceptedPerSec), fmtRate(ph.DeliveredPerSec), fmtRate(r.Baseline.RequestsPerSec), ph.RatioToBaseline,
				fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max),
				ph.Ledger.Duplicates, ph.Ledger.DeadLettered, ph.Ledger.Missing, ledgerWord(r, ph))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU seconds (share of one core) and peak RSS per process, over each load phase:")
	for _, r := range runs {
		if r.Error != "" {
			continue
		}
		fmt.Fprintf(w, "  %-10s %-10s %s\n", r.Scenario, r.Deployment, procLine(r.Main.Processes))
		fmt.Fprintf(w, "  %-10s %-10s %s\n", "", "", costLine(r))
		if l := stageLine(r.Main.StageMicros); l != "" {
			fmt.Fprintf(w, "  %-10s %-10s %s\n", "", "", l)
		}
		if l := trafficLine(r.Main.Traffic); l != "" {
			fmt.Fprintf(w, "  %-10s %-10s %s\n", "", "", l)
		}
	}
	if goals := Goals(runs); len(goals) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Goals (reported, not asserted):")
		for _, g := range goals {
			fmt.Fprintf(w, "  [%s] %s: %s\n", g.Met, g.Goal, g.Actual)
		}
	}
	var void []string
	for _, r := range runs {
		if r.Void {
			void = append(void, fmt.Sprintf("%s/%s: %s", r.Scenario, r.Deployment, strings.Join(r.VoidReasons, "; ")))
		}
	}
	if len(void) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "!!!!!!!! VOID RUNS: their ledger does not balance; do not quote their figures !!!!!!!!")
		for _, v := range void {
			fmt.Fprintln(w, "  "+v)
		}
	}
}

func phasesOf(r RunResult) []*PhaseResult {
	if r.Control != nil {
		return []*PhaseResult{r.Control, &r.Main}
	}
	return []*PhaseResult{&r.Main}
}

func ledgerWord(r RunResult, ph *PhaseResult) string {
	switch {
	case r.Error != "":
		return "FAILED"
	case ph.Ledger.Void:
		return "VOID"
	case r.Void:
		return "VOID(run)"
	case ph.Ledger.MissingFailing > 0:
		return fmt.Sprintf("ok, %d held", ph.Ledger.MissingFailing)
	}
	return "ok"
}

// costLine is the CPU per delivery beside the baseline's per request.
func costLine(r RunResult) string {
	s := fmt.Sprintf("CPU per delivery: deployment %.0f µs in total + bench %.0f µs (baseline: %.0f µs per request",
		r.Main.DeployCPUMicros, r.Main.BenchCPUMicros, r.Baseline.CPUMicrosPerRequest)
	if f := r.Floor; f != nil {
		s += fmt.Sprintf("; floor: JetStream's hops alone %.0f µs, %.0f µs with the history's", f.PipelineMicros, f.HistoryMicros)
	}
	return s + ")"
}

func procLine(ps []ProcFigures) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s %.1fs (%.0f%%, %.0f µs/delivery) %.0f MiB", p.Name, p.CPUSeconds, p.CPUPercent, p.CPUMicros, p.PeakRSSMiB))
	}
	return strings.Join(parts, "; ")
}

// Markdown returns the results as the section docs/performance.md shows.
func Markdown(runs []RunResult, m Machine, command, date, resultsRel string, scenarios []Scenario) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run on %s with `%s`.\n\n", date, command)
	fmt.Fprintf(&b, "Machine: %s.\n\n", m)
	if m.Busy() {
		fmt.Fprintf(&b, "**The machine was busy with other work when the bench started (load average %s on %d CPUs): the figures are noisy.**\n\n", m.LoadAvg, m.CPUs)
	}
	b.WriteString("| scenario | deployment | accepted/s | delivered/s | baseline/s | ratio | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | dups | dead | missing | ledger |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range runs {
		for _, ph := range phasesOf(r) {
			name := r.Scenario
			if ph.Name == "control" {
				name += " (control)"
			}
			if r.Error != "" {
				fmt.Fprintf(&b, "| %s | %s | | | | | | | | | | | | | FAILED |\n", name, r.Deployment)
				continue
			}
			l := ph.LatencyMs
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %d | %d | %d | %s |\n", name, r.Deployment,
				fmtRate(ph.Load.AcceptedPerSec), fmtRate(ph.DeliveredPerSec), fmtRate(r.Baseline.RequestsPerSec), ph.RatioToBaseline,
				fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max),
				ph.Ledger.Duplicates, ph.Ledger.DeadLettered, ph.Ledger.Missing, ledgerWord(r, ph))
		}
	}
	b.WriteString("\nCPU seconds (share of one core) and peak RSS of each process over the load phase:\n\n")
	b.WriteString("| scenario | deployment | processes |\n|---|---|---|\n")
	for _, r := range runs {
		if r.Error == "" {
			fmt.Fprintf(&b, "| %s | %s | %s; %s |\n", r.Scenario, r.Deployment, procLine(r.Main.Processes), costLine(r))
		}
	}
	if stageTable := stageMarkdown(runs); stageTable != "" {
		b.WriteString("\nWhere the deployment's CPU per delivery goes, by stage, from CPU profiles of the Herald processes (nats-server and redis-server count whole as nats and redis), µs per delivery:\n\n")
		b.WriteString(stageTable)
	}
	if goals := Goals(runs); len(goals) > 0 {
		b.WriteString("\nGoals (reported, not asserted):\n\n| goal | actual | met |\n|---|---|---|\n")
		for _, g := range goals {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Goal, g.Actual, g.Met)
		}
	}
	var notes []string
	for _, r := range runs {
		for _, n := range r.Notes {
			notes = append(notes, fmt.Sprintf("- %s/%s: %s", r.Scenario, r.Deployment, n))
		}
		if r.Void {
			notes = append(notes, fmt.Sprintf("- **VOID** %s/%s: %s", r.Scenario, r.Deployment, strings.Join(r.VoidReasons, "; ")))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	b.WriteString("\n")
	for _, sc := range scenarios {
		fmt.Fprintf(&b, "**%s**: %s\n\n![%s](%s/%s-%s.svg)\n\n", sc.Name, sc.Title, sc.Name, resultsRel, date, sc.Name)
	}
	return b.String()
}

// Doc markers: UpdateDoc replaces what lies between them.
const (
	DocBegin = "<!-- bench:begin (written by make bench; edit outside these markers) -->"
	DocEnd   = "<!-- bench:end -->"
)

// UpdateDoc replaces the section between DocBegin and DocEnd in path.
func UpdateDoc(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i := bytes.Index(b, []byte(DocBegin))
	j := bytes.Index(b, []byte(DocEnd))
	if i < 0 || j < i {
		return errors.New(path + ": bench markers not found")
	}
	var out bytes.Buffer
	out.Write(b[:i+len(DocBegin)])
	out.WriteString("\n" + section)
	out.Write(b[j:])
	return writeAtomic(path, out.Bytes())
}

// stageMarkdown is the table of the runs' CPU per delivery by stage; ""
// when no run was profiled.
func stageMarkdown(runs []RunResult) string {
	var b strings.Builder
	for _, r := range runs {
		m := r.Main.StageMicros
		if r.Error != "" || len(m) == 0 {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("| scenario | deployment | " + strings.Join(Stages, " | ") + " | total |\n|---|---|" + strings.Repeat("--:|", len(Stages)+1) + "\n")
		}
		fmt.Fprintf(&b, "| %s | %s |", r.Scenario, r.Deployment)
		for _, s := range Stages {
			fmt.Fprintf(&b, " %.0f |", m[s])
		}
		fmt.Fprintf(&b, " %.0f |\n", r.Main.DeployCPUMicros)
	}
	return b.String()
}
