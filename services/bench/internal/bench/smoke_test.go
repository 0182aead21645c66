package bench

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every scenario, at tiny sizes, through the whole machinery
// (setup through the API, baseline, warm-up, load, drain, DLQ, ledger,
// figures, JSON and SVG) against Herald in process, so the benchmark cannot
// rot. It proves the books balance, not how fast anything is: the full runs
// are `make bench`.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke runs of the bench scenarios take a few seconds each")
	}
	t.Setenv("HERALD_EGRESS_ALLOW_PRIVATE", "true") // the sink is on 127.0.0.1
	t.Setenv("HERALD_ALLOW_PRIVATE_NETWORKS", "true")
	start := time.Now()
	out := t.TempDir()
	for _, sc := range Scenarios(Smoke) {
		if len(sc.Senders) > 0 {
			continue // TestScaling runs it, on processes
		}
		deps := []bool{false}
		if sc.Name == "single" || sc.Name == "flaky" || sc.Name == "blackhole" {
			deps = append(deps, true) // the separate roles too, on an external NATS and Redis
		}
		var runs []RunResult
		for _, separate := range deps {
			dep := inProcess{t: t, separate: separate}
			t.Run(sc.Name+"/"+dep.Name(), func(t *testing.T) {
				dep.t = t
				ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
				defer cancel()
				began := time.Now()
				r := RunScenario(ctx, Options{Dir: t.TempDir(), Log: testWriter{t}}, sc, dep)
				t.Logf("%s in %.1f s: %s", sc.Name, time.Since(began).Seconds(), oneLine(r))
				for _, n := range r.Notes {
					t.Logf("note: %s", n)
				}
				checkRun(t, sc, r)
				runs = append(runs, r)
			})
		}
		j, s, err := WriteScenario(out, ScenarioFile{Scenario: sc.Name, Title: sc.Title, Date: "smoke", Machine: ReadMachine(), Runs: runs, Goals: Goals(runs)})
		if err != nil {
			t.Fatal(err)
		}
		checkFiles(t, j, s, len(runs))
	}
	t.Logf("all scenarios in %.1f s", time.Since(start).Seconds())
}

func checkRun(t *testing.T, sc Scenario, r RunResult) {
	t.Helper()
	if r.Error != "" {
		t.Fatalf("run failed: %s", r.Error)
	}
	if r.Void {
		t.Fatalf("run VOID: %s", strings.Join(r.VoidReasons, "; "))
	}
	m := r.Main
	l := m.Ledger
	if !l.Balanced || l.Missing != l.MissingFailing || l.Delivered == 0 || l.Delivered+l.DeadLettered+l.Missing != l.Expected {
		t.Fatalf("ledger %+v", l)
	}
	if r.Baseline.RequestsPerSec <= 0 || r.Baseline.Failed != 0 {
		t.Fatalf("baseline %+v", r.Baseline)
	}
	if m.DeliveredPerSec <= 0 || m.RatioToBaseline <= 0 || m.LatencyMs.Count == 0 || m.LatencyMs.P99 <= 0 || len(m.Series) == 0 {
		t.Fatalf("figures: %s; series %d points", oneLine(r), len(m.Series))
	}
	switch sc.Name {
	case "single":
		if f := r.Floor; f == nil || f.Deliveries != sc.FloorEvents || f.PipelinePerSec <= 0 || f.HistoryPerSec <= 0 {
			t.Fatalf("single: floor %+v, want %d deliveries through each path", f, sc.FloorEvents)
		}
	case "fanout":
		if l.Expected != l.Accepted*sc.Endpoints {
			t.Fatalf("fan-out: %d pairs expected for %d events", l.Expected, l.Accepted)
		}
	case "flaky":
		// Failed first attempts were retried: every pair delivered.
		if l.DeadLettered != 0 || l.Missing != 0 {
			t.Fatalf("flaky: %d dead letters, %d missing", l.DeadLettered, l.Missing)
		}
	case "blackhole":
		if r.Control == nil || r.Control.Ledger.Void || r.Control.LatencyMs.Count == 0 {
			t.Fatalf("control phase %+v", r.Control)
		}
		// Each event's job for the blackhole is dead-lettered after its
		// timeout, or still held (an open breaker) at the cut-off.
		if l.DeadLettered+l.MissingFailing != l.Accepted || l.DeadLettered == 0 {
			t.Fatalf("blackhole: %d dead letters and %d held for %d events", l.DeadLettered, l.MissingFailing, l.Accepted)
		}
	case "latency":
		if m.Load.Rate != sc.Rate {
			t.Fatalf("latency: not open loop: %+v", m.Load)
		}
	case "large":
		if len(m.BySize) != 3 {
			t.Fatalf("large: by size %+v", m.BySize)
		}
		for _, sf := range m.BySize[1:] {
			if sf.Refused > 0 && !strings.Contains(strings.Join(r.Notes, "\n"), humanBytes(sf.Bytes)+" events: Herald refused") {
				t.Fatalf("large: %d %s events refused without a note: %v", sf.Refused, humanBytes(sf.Bytes), r.Notes)
			}
		}
		if m.BySize[0].Accepted == 0 {
			t.Fatalf("large: no small event accepted: %+v", m.BySize)
		}
	}
}

func checkFiles(t *testing.T, jsonPath, svgPath string, runs int) {
	t.Helper()
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var f ScenarioFile
	if err := json.Unmarshal(b, &f); err != nil || len(f.Runs) != runs {
		t.Fatalf("%s: %v, %d runs", jsonPath, err, len(f.Runs))
	}
	checkSVG(t, svgPath)
}

func checkSVG(t *testing.T, path string) {
	t.Helper()
	sf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	dec := xml.NewDecoder(sf)
	lines := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", filepath.Base(path), err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines == 0 {
		t.Fatalf("%s draws no line", path)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
