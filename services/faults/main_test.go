package faults

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
)

// row is one line of the report.
type row struct {
	fault     string
	events    int
	jobs      int
	requests  map[string]int // per endpoint key
	delivered int
	dead      int
	missing   int
	dups      int
	allow     []allowed     // what the fault may explain, and why
	window    time.Duration // from the fault to its repair
	recovered time.Duration // from the fault to the last held-up event done; 0: none held up
	notes     []string
	failed    bool
}

var report struct {
	mu   sync.Mutex
	rows []row
}

func addRow(r row) {
	report.mu.Lock()
	defer report.mu.Unlock()
	report.rows = append(report.rows, r)
}

func TestMain(m *testing.M) {
	start := time.Now()
	code := m.Run()
	report.mu.Lock()
	rows := report.rows
	report.mu.Unlock()
	if len(rows) > 0 {
		var b strings.Builder
		printTable(&b, rows, time.Since(start))
		fmt.Print(b.String())
		if path := os.Getenv("HERALD_FAULTS_REPORT"); path != "" {
			if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "faults: write report:", err)
			}
		}
	}
	testenv.RemoveHeraldBinaries()
	os.Exit(code)
}

func printTable(w io.Writer, rows []row, total time.Duration) {
	var kinds []string
	for _, e := range endpoints {
		kinds = append(kinds, e.key)
	}
	header := []string{"fault", "events", "jobs", "requests " + strings.Join(kinds, "/"), "delivered", "dead", "missing", "duplicates", "fault window", "recovered after"}
	cells := [][]string{header}
	for _, r := range rows {
		var reqs []string
		for _, k := range kinds {
			reqs = append(reqs, fmt.Sprint(r.requests[k]))
		}
		rec := "-"
		if r.recovered > 0 {
			rec = r.recovered.Round(100 * time.Millisecond).String()
		}
		name := r.fault
		if r.failed {
			name += " (FAILED)"
		}
		var tags []string
		for _, a := range r.allow {
			tags = append(tags, a.tag)
		}
		dups := fmt.Sprintf("%d (allowed: %s)", r.dups, strings.Join(tags, ", "))
		if len(tags) == 0 {
			dups = fmt.Sprintf("%d (none allowed)", r.dups)
		}
		cells = append(cells, []string{name, fmt.Sprint(r.events), fmt.Sprint(r.jobs), strings.Join(reqs, "/"), fmt.Sprint(r.delivered),
			fmt.Sprint(r.dead), fmt.Sprint(r.missing), dups,
			r.window.Round(100 * time.Millisecond).String(), rec})
	}
	width := make([]int, len(header))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len(s))
		}
	}
	line := func(c []string) {
		fmt.Fprint(w, "|")
		for i, s := range c {
			if i == 0 {
				fmt.Fprintf(w, " %-*s |", width[i], s)
			} else {
				fmt.Fprintf(w, " %*s |", width[i], s)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nHerald fault suite (%s)\n\n", total.Round(time.Second))
	line(cells[0])
	fmt.Fprint(w, "|")
	for i := range header {
		if i == 0 {
			fmt.Fprint(w, strings.Repeat("-", width[i]+2)+"|")
		} else {
			fmt.Fprint(w, strings.Repeat("-", width[i]+1)+":|")
		}
	}
	fmt.Fprintln(w)
	for _, c := range cells[1:] {
		line(c)
	}
	fmt.Fprintln(w, "\njobs: (event, endpoint) pairs owed to the three endpoints: ok (healthy; 1 request each), ff (fails each event's first")
	fmt.Fprintln(w, "request, accepts the next; 2 each), af (always 500, max_attempts 3; 3 each and one dead letter). requests: what the")
	fmt.Fprintln(w, "receiver got per endpoint; delivered: ok and ff jobs answered 2xx; dead: af jobs in GET /v1/dlq; missing: jobs short")
	fmt.Fprintln(w, "of a request or of their final state (never allowed); duplicates: requests repeating an attempt number, attempts above")
	fmt.Fprintln(w, "the expected count and second dead letters, each failing the row unless the fault explains it (below); recovered")
	fmt.Fprintln(w, "after: from the fault until the last event it held up (done later than usual) was delivered or dead-lettered.")
	for _, r := range rows {
		for _, a := range r.allow {
			fmt.Fprintf(w, "  %s: allowed %s (%s): %s\n", r.fault, a.what, a.tag, a.why)
		}
		for _, n := range r.notes {
			fmt.Fprintf(w, "  %s: %s\n", r.fault, n)
		}
	}
}
