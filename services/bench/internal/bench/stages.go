package bench

import (
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/google/pprof/profile"
)

// Stages are where one delivery's CPU goes, as a CPU profile of a Herald
// process tells it: the role whose code is on the stack, or the NATS
// (server or client) or Redis code under it, which counts as NATS or Redis
// whichever role called it. GC is the runtime's background collection
// (allocation is counted where it happens); other is what none of these
// claim (the Go runtime's scheduler, timers, the metrics endpoint).
var Stages = []string{"ingest", "router", "sender", "history", "nats", "redis", "gc", "other"}

// stageRules decide a sample's stage by its stack, first rule first: a
// rule matches when any frame's function name contains one of its
// substrings.
var stageRules = []struct {
	stage string
	funcs []string
}{
	{"redis", []string{"github.com/redis/go-redis/"}},
	{"nats", []string{"github.com/nats-io/"}},
	{"history", []string{"herald/pkg/history."}},
	{"router", []string{"herald/pkg/router.", "herald/pkg/payload."}},
	{"sender", []string{"herald/pkg/sender.", "herald/pkg/deliver.", "herald/pkg/limit.", "herald/pkg/sign.", "net/http.(*persistConn)", "net/http.(*Transport)"}},
	{"ingest", []string{"herald/pkg/api.", "herald/pkg/ingest.", "net/http.(*conn)", "net/http.(*Server)"}},
	{"gc", []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"}},
}

// StageShares reads a CPU profile and returns each stage's share of its
// samples (summing to 1) and the seconds of CPU it sampled.
func StageShares(path string) (map[string]float64, float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, 0, fmt.Errorf("profile %s: %w", path, err)
	}
	vi := len(p.SampleType) - 1 // cpu nanoseconds
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	byStage := map[string]float64{}
	var total float64
	for _, s := range p.Sample {
		v := float64(s.Value[vi])
		total += v
		byStage[stageOf(s)] += v
	}
	if total == 0 {
		return byStage, 0, nil
	}
	for k := range byStage {
		byStage[k] /= total
	}
	return byStage, total / 1e9, nil
}

func stageOf(s *profile.Sample) string {
	for _, r := range stageRules {
		for _, loc := range s.Location {
			for _, ln := range loc.Line {
				if ln.Function == nil {
					continue
				}
				for _, f := range r.funcs {
					if strings.Contains(ln.Function.Name, f) {
						return r.stage
					}
				}
			}
		}
	}
	return "other"
}

// BenchProc names the bench's own process among a phase's processes.
const BenchProc = "bench (load generator + sink)"

// stageMicros splits the deployment's CPU per delivery by stage: a Herald
// process's by the shares of its profile (a Herald process without one
// counts as other), nats-server's as nats, redis-server's as redis.
func stageMicros(procs []ProcFigures, profiles map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, p := range procs {
		switch {
		case p.Name == BenchProc:
		case strings.HasPrefix(p.Name, "nats-server"): // one, or the nodes of a cluster
			out["nats"] += p.CPUMicros
		case p.Name == "redis-server":
			out["redis"] += p.CPUMicros
		default:
			shares, _, err := StageShares(profiles[p.Name])
			if err != nil || len(shares) == 0 {
				out["other"] += p.CPUMicros
				continue
			}
			for st, f := range shares {
				out[st] += f * p.CPUMicros
			}
		}
	}
	for k, v := range out {
		out[k] = math.Round(v)
	}
	return out
}

// stageLine is a phase's CPU per delivery by stage, in the order of Stages.
func stageLine(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, s := range Stages {
		parts = append(parts, fmt.Sprintf("%s %.0f", s, m[s]))
	}
	return "by stage (µs per delivery, from profiles): " + strings.Join(parts, ", ")
}

// trafficLine is what one delivery cost in messages and calls, where they
// were counted: NATS messages and Redis commands (servers of their own),
// and the senders' refusals and handoffs (every deployment).
func trafficLine(t *Traffic) string {
	if t == nil {
		return ""
	}
	var parts []string
	if t.NATSMsgsPerDelivery > 0 {
		parts = append(parts, fmt.Sprintf("NATS messages %.1f", t.NATSMsgsPerDelivery))
	}
	if t.RedisCallsPerDelivery > 0 {
		parts = append(parts, fmt.Sprintf("Redis commands %.1f", t.RedisCallsPerDelivery))
	}
	for _, k := range []string{"refused", "rated", "handoffs"} {
		if v, ok := t.Senders[k]; ok {
			parts = append(parts, fmt.Sprintf("jobs %s %.2f", k, v))
		}
	}
	if t.AttemptsPerDelivery > 0 {
		parts = append(parts, fmt.Sprintf("HTTP attempts %.2f of %.2f ms on average", t.AttemptsPerDelivery, t.AttemptMeanMs))
	}
	if len(parts) == 0 {
		return ""
	}
	return "per delivery: " + strings.Join(parts, ", ")
}
