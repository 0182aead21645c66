package bench

import (
	"fmt"
	"strings"
	"time"
)

// Scenario is one load shape: the endpoints Herald delivers to, how they
// answer, and the load put on it.
type Scenario struct {
	Name  string
	Title string // one line: what it measures
	// Tenants and Endpoints (per tenant) are set up through the API.
	Tenants   int
	Endpoints int
	// Fanout subscribes every endpoint of a tenant to one event type, so
	// each event reaches all of them; otherwise each endpoint has a type of
	// its own and the events are spread over them, one endpoint each.
	Fanout bool
	// FailFirstEvery makes every n-th endpoint answer 500 to the first
	// attempt of each event (10: 10 % of the endpoints).
	FailFirstEvery int
	// Blackhole adds to the fan-out one endpoint that never answers
	// (timeout_ms 1000, max_attempts 1: each of its jobs holds a sender
	// worker for its whole timeout, then is dead-lettered), and runs the
	// same load first without it, as a control.
	Blackhole bool
	Sizes     []SizeClass
	// Rate > 0 is an open loop at Rate events/s; 0 a closed loop of
	// Concurrency producers, as fast as accepted.
	Rate        float64
	Concurrency int
	Duration    time.Duration // the load, at most
	Count       int           // events, at most
	// Drain is the cut-off after the load: pairs neither delivered nor
	// dead-lettered by then are missing.
	Drain time.Duration
	// Baseline is how long the baseline (signed POSTs straight to the sink)
	// runs.
	Baseline      time.Duration
	MaxEventBytes int64  // HERALD_MAX_EVENT_BYTES for this scenario
	RetrySchedule string // HERALD_RETRY_SCHEDULE; "": Herald's default
	// Stall makes every endpoint answer after this long: slow receivers,
	// whose requests hold sender workers and endpoint slots (scaling.go).
	Stall time.Duration
	// FloorEvents, when set, also measures the floor (floor.go) with that
	// many events, after the baseline: what the scenario's path costs
	// JetStream alone.
	FloorEvents int
	// Senders, when set, runs the scenario on the separate deployment once
	// per count of herald-sender processes, and on no other deployment: the
	// scaling figures (scaling.go).
	Senders []int
}

// Size selects how big the scenarios are.
type Size int

// Sizes.
const (
	// Full sizes finish all scenarios on both deployments in about five
	// minutes on a 2-core machine.
	Full Size = iota
	// Smoke sizes are tiny, for the test suite: they prove the machinery
	// works, not how fast anything is.
	Smoke
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// Scenarios returns every scenario, in order, at the given size.
func Scenarios(size Size) []Scenario {
	one := []SizeClass{{Bytes: kib, Weight: 1}}
	full := []Scenario{
		{Name: "single", Title: "one tenant, one endpoint, 1 KiB events, closed loop (as fast as accepted)",
			Tenants: 1, Endpoints: 1, Sizes: one, Concurrency: 32, Duration: 4 * time.Second, Count: 20000, Drain: 45 * time.Second,
			FloorEvents: 20000},
		{Name: "fanout", Title: "each event to 100 endpoints of one tenant",
			Tenants: 1, Endpoints: 100, Fanout: true, Sizes: one, Concurrency: 8, Duration: 4 * time.Second, Count: 150},
		{Name: "tenants", Title: "1,000 endpoints across 100 tenants, events spread over them",
			Tenants: 100, Endpoints: 10, Sizes: one, Concurrency: 32, Duration: 4 * time.Second, Count: 20000},
		{Name: "flaky", Title: "100 endpoints, 10 % answer 500 to each event's first attempt (Herald's retry schedule)",
			Tenants: 1, Endpoints: 100, FailFirstEvery: 10, Sizes: one, Concurrency: 32, Duration: 3 * time.Second, Count: 10000,
			Drain: 20 * time.Second}, // the first retry waits 5 s ± 20 %
		{Name: "blackhole", Title: "fan-out to 100 healthy endpoints plus one that never answers, open loop 20 events/s",
			Tenants: 1, Endpoints: 100, Fanout: true, Blackhole: true, Sizes: one, Rate: 20, Concurrency: 64, Duration: 4 * time.Second,
			Drain: 15 * time.Second}, // the blackhole's timeouts are 1 s
		{Name: "latency", Title: "one endpoint, open loop at 1,000 events/s: latency without queueing",
			Tenants: 1, Endpoints: 1, Sizes: one, Rate: 1000, Concurrency: 128, Duration: 5 * time.Second},
		{Name: "large", Title: "1 MiB and 5 MiB events mixed with 1 KiB ones, HERALD_MAX_EVENT_BYTES raised",
			Tenants: 1, Endpoints: 1, Sizes: []SizeClass{{kib, 90}, {mib, 7}, {5 * mib, 3}},
			Concurrency: 4, Duration: 4 * time.Second, Count: 300, MaxEventBytes: 6*mib + 64*kib},
		scalingScenario,
	}
	for i := range full {
		if full[i].Drain == 0 {
			full[i].Drain = 30 * time.Second
		}
		full[i].Baseline = 2 * time.Second
	}
	if size == Full {
		return full
	}
	smoke := map[string]func(*Scenario){
		"single":  func(s *Scenario) { s.Concurrency, s.Count, s.FloorEvents = 4, 60, 200 },
		"fanout":  func(s *Scenario) { s.Endpoints, s.Count, s.Concurrency = 8, 6, 2 },
		"tenants": func(s *Scenario) { s.Tenants, s.Endpoints, s.Count, s.Concurrency = 4, 3, 48, 4 },
		"flaky": func(s *Scenario) {
			// Two failing endpoints, each failing 3 first attempts (with
			// the warm-up's): under the breaker's 5 consecutive failures.
			s.Endpoints, s.FailFirstEvery, s.Count, s.Concurrency, s.RetrySchedule = 20, 10, 40, 4, "100ms,200ms"
		},
		"blackhole": func(s *Scenario) { s.Endpoints, s.Rate, s.Duration, s.Concurrency = 6, 20, 400*time.Millisecond, 8 },
		"latency":   func(s *Scenario) { s.Rate, s.Duration, s.Concurrency = 100, 500*time.Millisecond, 16 },
		"large": func(s *Scenario) {
			s.Sizes, s.Count, s.Concurrency = []SizeClass{{kib, 4}, {mib, 1}, {5 * mib, 1}}, 6, 2
		},
		"scaling": scalingSmoke,
	}
	out := make([]Scenario, 0, len(full))
	for _, s := range full {
		smoke[s.Name](&s)
		if s.Rate == 0 {
			s.Duration = 5 * time.Second
		}
		s.Drain, s.Baseline = 20*time.Second, 200*time.Millisecond
		out = append(out, s)
	}
	return out
}

// Select returns the scenarios named in a comma-separated list ("" or
// "all": every one), in the canonical order.
func Select(all []Scenario, names string) ([]Scenario, error) {
	names = strings.TrimSpace(names)
	if names == "" || names == "all" {
		return all, nil
	}
	want := map[string]bool{}
	for n := range strings.SplitSeq(names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	var out []Scenario
	for _, s := range all {
		if want[s.Name] {
			out = append(out, s)
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		var known []string
		for _, s := range all {
			known = append(known, s.Name)
		}
		var unknown []string
		for n := range want {
			unknown = append(unknown, n)
		}
		return nil, fmt.Errorf("unknown scenario(s) %s; known: %s", strings.Join(unknown, ","), strings.Join(known, ","))
	}
	return out, nil
}
