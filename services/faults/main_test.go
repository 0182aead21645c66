package faults

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/testenv"
)

// row is one line of the report.
type row struct {
	fault     string
	events    int
	jobs      int
	delivered int
	dead      int
	missing   int
	dups      int
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
	header := []string{"fault", "events", "jobs", "delivered", "dead", "missing", "duplicates", "fault window", "recovered after"}
	cells := [][]string{header}
	for _, r := range rows {
		rec := "-"
		if r.recovered > 0 {
			rec = r.recovered.Round(100 * time.Millisecond).String()
		}
		name := r.fault
		if r.failed {
			name += " (FAILED)"
		}
		cells = append(cells, []string{name, fmt.Sprint(r.events), fmt.Sprint(r.jobs), fmt.Sprint(r.delivered),
			fmt.Sprint(r.dead), fmt.Sprint(r.missing), fmt.Sprint(r.dups),
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
	fmt.Fprintln(w, "\njobs: (event, matching endpoint) pairs owed to the two healthy endpoints; dead: jobs in the DLQ;")
	fmt.Fprintln(w, "duplicates: deliveries beyond the first of a job; recovered after: from the fault until the last event held up by it (done more than 1s after it was due) was delivered or dead-lettered.")
	for _, r := range rows {
		for _, n := range r.notes {
			fmt.Fprintf(w, "  %s: %s\n", r.fault, n)
		}
	}
}
