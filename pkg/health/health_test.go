package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldhq/herald/pkg/health"
)

func get(t *testing.T, base, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// Each probe keeps its meaning: live from the first request, started and
// ready only after Started; an optional check that fails degrades without
// making the process unready, a required one makes it unready; Probe
// tells 200 from the rest.
func TestProbes(t *testing.T) {
	p := health.New()
	mux := http.NewServeMux()
	p.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	want := func(path string, status int) {
		t.Helper()
		if got, v := get(t, srv.URL, path); got != status {
			t.Fatalf("%s: %d %v, want %d", path, got, v, status)
		}
	}
	want(health.PathLive, 200)
	want(health.PathHealthz, 200)
	want(health.PathStartup, 503)
	want(health.PathReady, 503)
	if err := health.Probe(ctx, srv.URL, health.PathReady); !errors.Is(err, health.ErrNotReady) {
		t.Fatalf("Probe while starting: %v, want ErrNotReady", err)
	}

	var natsErr error
	p.Started(
		health.Check{Name: "nats", Fn: func(context.Context) error { return natsErr }},
		health.Check{Name: "redis", Optional: true, Fn: func(context.Context) error { return errors.New("connection refused") }},
	)
	want(health.PathStartup, 200)
	status, v := get(t, srv.URL, health.PathReady)
	checks, _ := v["checks"].(map[string]any)
	if status != 200 || checks["nats"] != "ok" || checks["redis"] != "degraded: connection refused" {
		t.Fatalf("/readyz with Redis down: %d %v, want 200, nats ok, redis degraded", status, v)
	}
	if err := health.Probe(ctx, srv.URL, health.PathReady); err != nil {
		t.Fatalf("Probe: %v", err)
	}

	natsErr = errors.New("not connected")
	status, v = get(t, srv.URL, health.PathReady)
	checks, _ = v["checks"].(map[string]any)
	if status != 503 || checks["nats"] != "not connected" || v["ready"] != false {
		t.Fatalf("/readyz with NATS down: %d %v, want 503 naming nats", status, v)
	}
	want(health.PathLive, 200)

	srv.Close()
	if err := health.Probe(ctx, srv.URL, health.PathLive); err == nil || errors.Is(err, health.ErrNotReady) {
		t.Fatalf("Probe of a closed server: %v, want a connection error", err)
	}
}
