package service

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/version"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
)

// Queue depths are collected at scrape time from the process's current
// JetStream connection. The collector is registered once per process and
// pointed at the connection of the latest Run, so tests that run Herald
// several times in one process do not register it twice.
var (
	streams     atomic.Pointer[bus.StreamCollector]
	streamsOnce sync.Once
)

type currentStreams struct{}

func (currentStreams) Describe(ch chan<- *prometheus.Desc) {
	bus.NewStreamCollector(nil).Describe(ch)
}

func (currentStreams) Collect(ch chan<- prometheus.Metric) {
	if c := streams.Load(); c != nil {
		c.Collect(ch)
	}
}

func collectStreams(js jetstream.JetStream) {
	streams.Store(bus.NewStreamCollector(js))
	streamsOnce.Do(func() { prometheus.MustRegister(currentStreams{}) })
}

// herald_build_info names the build every process runs, so a dashboard
// can tell a rollout's versions apart and join them to other series.
func init() {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herald_build_info",
		Help: "Always 1; the labels name the build: Herald's version, the Go version, the VCS revision.",
		ConstLabels: prometheus.Labels{
			"version": version.Version, "goversion": runtime.Version(), "revision": revision(),
		},
	})
	g.Set(1)
	prometheus.MustRegister(g)
}

// revision is the VCS revision the go command recorded in the binary, with
// "-modified" for a dirty tree; "unknown" without one (go test, go run).
func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		rev += "-modified"
	}
	return rev
}

var endpointsByState = promauto.NewGaugeVec(prometheus.GaugeOpts{
	Name: "herald_endpoints",
	Help: "Endpoints of all tenants by state (enabled, paused, disabled), counted every minute by each API process; take max over replicas.",
}, []string{"state"})

// endpointCountEvery is how often the API role counts endpoints by state.
const endpointCountEvery = time.Minute

// countEndpoints keeps herald_endpoints current until ctx ends. A count
// that fails leaves the last one (a NATS outage is alerted on by itself).
func countEndpoints(ctx context.Context, st *store.Store, log zerolog.Logger) {
	t := time.NewTicker(endpointCountEvery)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := st.CountEndpoints(cctx)
		cancel()
		switch {
		case err == nil:
			endpointsByState.WithLabelValues("enabled").Set(float64(n.Enabled))
			endpointsByState.WithLabelValues("paused").Set(float64(n.Paused))
			endpointsByState.WithLabelValues("disabled").Set(float64(n.Disabled))
		case ctx.Err() == nil:
			log.Debug().Err(err).Msg("endpoints not counted")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
