package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func wellFormed(t *testing.T, b []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
	}
}

func TestChartSVG(t *testing.T) {
	c := Chart{Title: `a <b> & "c"`, Subtitle: []string{"one", "two"}, XLabel: "seconds", Panels: []Panel{
		{Title: "rate", Lines: []Line{{Label: "x", Color: "#123456", Points: [][2]float64{{0, 10}, {1, 20}, {2, 15}}}},
			HLines: []HLine{{Y: 30, Label: "baseline", Color: "#123456"}}},
		{Title: "p99", Log: true, Lines: []Line{{Label: "y", Color: "#654321", Dashed: true, Points: [][2]float64{{0, 1}, {1, 5000}}}}},
		{Title: "empty"},
	}}
	b := c.SVG()
	wellFormed(t, b)
	s := string(b)
	for _, want := range []string{"a &lt;b&gt; &amp; &#34;c&#34;", "(log scale)", "baseline", `stroke-dasharray="7,4"`, "<polyline"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Error("SVG holds NaN or Inf coordinates")
	}
}

func TestLegendWraps(t *testing.T) {
	p := Panel{}
	for i := range 12 {
		p.Lines = append(p.Lines, Line{Label: strings.Repeat("x", 20+i), Color: "#000"})
	}
	p.Lines = append(p.Lines, Line{Label: "faint, not in the legend", Faint: true})
	items := legendLayout(p)
	if len(items) != 12 || legendRows(p) < 3 {
		t.Fatalf("%d items in %d rows", len(items), legendRows(p))
	}
	for _, it := range items {
		if it.x+float64(len(it.line.Label))*6.2+26 > svgW {
			t.Errorf("%q at x=%.0f runs off the picture", it.line.Label, it.x)
		}
	}
	wellFormed(t, Chart{Panels: []Panel{p}}.SVG())
}

func TestNiceStepAndFormat(t *testing.T) {
	for raw, want := range map[float64]float64{0.7: 1, 1.3: 2, 2.2: 2.5, 3: 5, 7: 10, 1234: 2000, 0: 1} {
		if got := niceStep(raw); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceStep(%v) = %v, want %v", raw, got, want)
		}
	}
	for v, want := range map[float64]string{20000: "20k", 2500000: "2.5M", 5: "5", 2.5: "2.5", 0.25: "0.25"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
	if commas(1234567) != "1,234,567" || commas(-1000) != "-1,000" || commas(12) != "12" {
		t.Error("commas")
	}
}

func sampleRuns() []RunResult {
	ph := func(dps, p99 float64) PhaseResult {
		return PhaseResult{Name: "main", DeliveredPerSec: dps, RatioToBaseline: dps / 10000, BucketSeconds: 1,
			LatencyMs: Percentiles{Count: 10, P50: 1, P99: p99, Max: p99 * 2},
			Series:    []Point{{T: 0, AcceptedPS: dps, DeliverPS: dps, P99Ms: p99}, {T: 1, DeliverPS: dps / 2, P99Ms: p99 * 3}},
			Processes: []ProcFigures{{Name: "herald-sender-1", Herald: true, PeakRSSMiB: 40}, {Name: "herald-sender-2", Herald: true, PeakRSSMiB: 170}}}
	}
	ctl := ph(5000, 10)
	ctl.Name = "control"
	return []RunResult{
		{Scenario: "single", Deployment: "all-in-one", Baseline: BaselineFigures{RequestsPerSec: 10000}, Main: ph(7000, 5)},
		{Scenario: "single", Deployment: "separate", Baseline: BaselineFigures{RequestsPerSec: 10000}, Main: ph(5000, 5)},
		{Scenario: "latency", Deployment: "all-in-one", Main: ph(1000, 30)},
		{Scenario: "blackhole", Deployment: "separate", Main: ph(5000, 12), Control: &ctl},
		{Scenario: "blackhole", Deployment: "all-in-one", Main: ph(5000, 12), Control: &ctl, Void: true, VoidReasons: []string{"3 missing"}},
	}
}

func TestGoals(t *testing.T) {
	got := map[string]string{}
	for _, g := range Goals(sampleRuns()) {
		got[g.Goal] = g.Met
	}
	want := map[string]string{
		"single on all-in-one: deliveries/s >= 60 % of the same run's baseline":   "yes",
		"single on separate: deliveries/s >= 60 % of the same run's baseline":     "no",
		"latency on all-in-one: p99 accepted->received < 25 ms at 1,000 events/s": "no",
		"blackhole on separate: healthy p99 within 1.5× of the run without it":    "yes",
		"blackhole on all-in-one: healthy p99 within 1.5× of the run without it":  "n/a (void)",
		"every herald-sender under 150 MiB RSS (peak, any scenario)":              "no",
	}
	for g, m := range want {
		if got[g] != m {
			t.Errorf("%s: %q, want %q (all: %v)", g, got[g], m, got)
		}
	}
}

func TestReportsAndDoc(t *testing.T) {
	runs := sampleRuns()
	var buf bytes.Buffer
	PrintTable(&buf, runs)
	out := buf.String()
	for _, want := range []string{"VOID RUNS", "blackhole (control)", "7,000", "0.70", "[no] latency"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	md := Markdown(runs, ReadMachine(), "make bench", "2026-01-02", "../bench/results", Scenarios(Full)[:1])
	if !strings.Contains(md, "| single | all-in-one | ") || !strings.Contains(md, "![single](../bench/results/2026-01-02-single.svg)") || !strings.Contains(md, "**VOID**") {
		t.Errorf("markdown:\n%s", md)
	}
	dir := t.TempDir()
	doc := filepath.Join(dir, "perf.md")
	if err := os.WriteFile(doc, []byte("intro\n"+DocBegin+"\nold\n"+DocEnd+"\noutro\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDoc(doc, "new\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	if string(b) != "intro\n"+DocBegin+"\nnew\n"+DocEnd+"\noutro\n" {
		t.Errorf("doc:\n%s", b)
	}
	if err := UpdateDoc(filepath.Join(dir, "none.md"), "x"); err == nil {
		t.Error("missing doc accepted")
	}
	j, s, err := WriteScenario(dir, ScenarioFile{Scenario: "single", Date: "2026-01-02", Finished: time.Now(), Runs: runs[:2]})
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, j, s, 2)
}

func TestSelect(t *testing.T) {
	all := Scenarios(Full)
	got, err := Select(all, "latency, single")
	if err != nil || len(got) != 2 || got[0].Name != "single" || got[1].Name != "latency" {
		t.Fatalf("Select: %v %v", got, err)
	}
	if _, err := Select(all, "single,nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown scenario: %v", err)
	}
	if got, _ := Select(all, "all"); len(got) != 8 {
		t.Fatalf("all: %d", len(got))
	}
	for _, s := range append(Scenarios(Full), Scenarios(Smoke)...) {
		if s.Count <= 0 && s.Duration <= 0 || s.Drain <= 0 || s.Baseline <= 0 || len(s.Sizes) == 0 || s.Concurrency <= 0 {
			t.Errorf("scenario %s is not bounded or incomplete: %+v", s.Name, s)
		}
	}
}

func TestAcceptedAt(t *testing.T) {
	ms := int64(1_000_000)
	// Herald's millisecond [5, 6) ms, the producer's request [5.2, 9] ms:
	// accepted in [5.2, 6] ms, estimated at its middle.
	if got := acceptedAt(5_200_000, 9*ms, 5); got != 5_600_000 {
		t.Errorf("acceptedAt = %d", got)
	}
	if got := acceptedAt(5*ms, 9*ms, 0); got != 9*ms {
		t.Errorf("no timestamp: %d, want the 202", got)
	}
	if got := acceptedAt(5*ms, 9*ms, 20); got != 9*ms {
		t.Errorf("timestamp outside the request: %d, want the 202", got)
	}
}

func TestReadProcSelf(t *testing.T) {
	s, ok := ReadProc(os.Getpid())
	if !ok {
		t.Skip("no /proc")
	}
	if s.PeakRSS <= 0 || s.RSS <= 0 || s.PeakRSS < s.RSS || s.CPUSeconds < 0 {
		t.Fatalf("sample %+v", s)
	}
	if _, ok := ReadProc(0); ok {
		t.Fatal("pid 0")
	}
	m := ReadMachine()
	if m.CPUs <= 0 || m.Go == "" {
		t.Fatalf("machine %+v", m)
	}
}
