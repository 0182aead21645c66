// Package health serves the operational endpoints every Herald process has,
// with the meanings Kubernetes' three probes and Docker's HEALTHCHECK give
// them:
//
//   - /livez (and /healthz, its older name): the process works. It answers
//     200 as long as the HTTP server serves, whatever NATS or Redis do, so
//     that an outage of a dependency never gets healthy pods restarted.
//   - /startupz: start-up is over (NATS reached, streams and stores set up,
//     every role consuming). A slow start (a NATS cluster electing leaders)
//     answers 503 here, not a failed liveness probe.
//   - /readyz: the role can do its job now. Only the checks the role needs
//     decide it; an optional check (Redis, a cache Herald works without)
//     is reported as degraded but leaves the process ready, so that a Redis
//     blip does not take every ingest pod out of its Service.
//   - /metrics: Prometheus.
//
// Probe asks a process for one of them, for the healthcheck command of
// distroless images, which have no curl.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths of the probes.
const (
	PathLive    = "/livez"
	PathHealthz = "/healthz" // the liveness probe's older name, kept
	PathStartup = "/startupz"
	PathReady   = "/readyz"
	PathMetrics = "/metrics"
)

// Check reports whether one dependency is usable; nil means ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
	// Optional marks what the role works without, perhaps slower (Redis):
	// its failure shows as "degraded: ..." in /readyz, which still
	// answers 200.
	Optional bool
}

// checkTimeout bounds all checks of one /readyz: a dependency that hangs
// makes the process unready, not the probe time out.
const checkTimeout = 2 * time.Second

// Probes answers the probes of one process. The zero value is not usable:
// use New.
type Probes struct {
	started atomic.Bool
	mu      sync.Mutex
	checks  []Check
}

// New returns Probes for a process that is starting: live, neither started
// nor ready.
func New() *Probes { return &Probes{} }

// Started says start-up is over and sets the readiness checks: from now on
// /startupz answers 200 and /readyz runs checks.
func (p *Probes) Started(checks ...Check) {
	p.mu.Lock()
	p.checks = checks
	p.mu.Unlock()
	p.started.Store(true)
}

// Register adds the probes and /metrics to mux.
func (p *Probes) Register(mux *http.ServeMux) {
	live := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}
	mux.HandleFunc("GET "+PathLive, live)
	mux.HandleFunc("GET "+PathHealthz, live)
	mux.HandleFunc("GET "+PathStartup, func(w http.ResponseWriter, r *http.Request) {
		if !p.started.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"started": false})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"started": true})
	})
	mux.HandleFunc("GET "+PathReady, func(w http.ResponseWriter, r *http.Request) {
		ready, out := p.Ready(r.Context())
		status := http.StatusOK
		if !ready {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"ready": ready, "checks": out})
	})
	mux.Handle("GET "+PathMetrics, promhttp.Handler())
}

// Ready runs the checks and reports whether the process is ready, with
// each check's state: "ok", its error, or "degraded: " and the error of
// an optional one. Before Started it is not ready.
func (p *Probes) Ready(ctx context.Context) (bool, map[string]string) {
	if !p.started.Load() {
		return false, map[string]string{"startup": "starting"}
	}
	p.mu.Lock()
	checks := p.checks
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	ready := true
	out := make(map[string]string, len(checks))
	for _, c := range checks {
		switch err := c.Fn(ctx); {
		case err == nil:
			out[c.Name] = "ok"
		case c.Optional:
			out[c.Name] = "degraded: " + err.Error()
		default:
			ready = false
			out[c.Name] = err.Error()
		}
	}
	return ready, out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrNotReady is Probe's error for a process that answered, but not 200.
var ErrNotReady = errors.New("not ready")

// Probe asks the process serving at base (http://host:port) for path
// (PathReady, ...) and returns nil on 200. A process that answers otherwise
// gives an error wrapping ErrNotReady with its answer; one that does not
// answer within ctx, the connection's error.
func Probe(ctx context.Context, base, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %d %s", ErrNotReady, path, resp.StatusCode, body)
	}
	return nil
}
