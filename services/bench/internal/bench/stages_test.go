package bench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/pprof/profile"
)

// writeProfile writes a CPU profile whose samples have the given stacks
// (leaf first) and values (ns).
func writeProfile(t *testing.T, stacks [][]string, values []int64) string {
	t.Helper()
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 10_000_000,
	}
	fns := map[string]*profile.Function{}
	for i, st := range stacks {
		var locs []*profile.Location
		for _, name := range st {
			fn := fns[name]
			if fn == nil {
				fn = &profile.Function{ID: uint64(len(fns) + 1), Name: name}
				fns[name] = fn
				p.Function = append(p.Function, fn)
			}
			loc := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: fn}}}
			p.Location = append(p.Location, loc)
			locs = append(locs, loc)
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: []int64{1, values[i]}})
	}
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := p.Write(f); err != nil {
		t.Fatal(err)
	}
	return path
}

// A sample belongs to the first stage whose code is on its stack: NATS
// and Redis client code counts as NATS and Redis whatever role called it.
func TestStageShares(t *testing.T) {
	path := writeProfile(t, [][]string{
		{"github.com/heraldhq/herald/pkg/sender.(*Sender).work"},
		{"github.com/nats-io/nats.go.(*Conn).publish", "github.com/heraldhq/herald/pkg/sender.(*Sender).record"},
		{"encoding/json.checkValid", "github.com/heraldhq/herald/pkg/router.FromNATS"},
		{"github.com/heraldhq/herald/pkg/api.(*Server).postEvent"},
		{"runtime.gcBgMarkWorker"},
		{"runtime.schedule"},
		{"github.com/redis/go-redis/v9.(*Client).Process", "github.com/heraldhq/herald/pkg/history.(*Redis).Apply"},
		{"github.com/nats-io/nats-server/v2/server.(*stream).internalLoop"},
	}, []int64{30, 10, 20, 10, 10, 10, 5, 5})
	shares, secs, err := StageShares(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"sender": .3, "nats": .15, "router": .2, "ingest": .1, "gc": .1, "other": .1, "redis": .05}
	for st, w := range want {
		if d := shares[st] - w; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: share %v, want %v", st, shares[st], w)
		}
	}
	if secs != 100e-9 {
		t.Errorf("sampled %v s, want 1e-7", secs)
	}

	// The deployment's split: Herald processes by their profiles, the
	// servers whole, the bench left out.
	m := stageMicros([]ProcFigures{
		{Name: "herald", CPUMicros: 100}, {Name: "nats-server", CPUMicros: 40},
		{Name: "redis-server", CPUMicros: 7}, {Name: "herald-sender-1", CPUMicros: 9}, {Name: BenchProc, CPUMicros: 50},
	}, map[string]string{"herald": path})
	wantM := map[string]float64{"sender": 30, "nats": 55, "router": 20, "ingest": 10, "gc": 10, "other": 19, "redis": 12}
	for st, w := range wantM {
		if m[st] != w {
			t.Errorf("stage %s: %v µs, want %v (all: %v)", st, m[st], w, m)
		}
	}
}
