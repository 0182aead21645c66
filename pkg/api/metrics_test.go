package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/internal/testenv"
)

// The API counts requests by route pattern, method and status, and times
// them by route and method: ids in paths never become labels.
func TestHTTPMetrics(t *testing.T) {
	e := newEnv(t, nil)
	_, key := e.tenant("metrics")
	type series struct{ route, method, status string }
	want := map[series]float64{
		{"/v1/endpoints/{id}", "GET", "404"}: 2,
		{"/v1/events", "POST", "202"}:        1,
		{"/v1/events", "POST", "401"}:        1,
		{"unmatched", "GET", "404"}:          1,
		{"/v1/endpoints", "PUT", "405"}:      0, // a 405 is no route's: the catch-all answers it
		{"unmatched", "PUT", "405"}:          1,
	}
	counter := func(s series) float64 {
		return testenv.Metric(t, "herald_http_requests_total", "route", s.route, "method", s.method, "status", s.status)
	}
	timer := func(route, method string) float64 {
		return testenv.Metric(t, "herald_http_request_duration_seconds", "route", route, "method", method)
	}
	before := map[series]float64{}
	for s := range want {
		before[s] = counter(s)
	}
	timedBefore := timer("/v1/endpoints/{id}", "GET")

	for range 2 {
		if r := e.do("GET", "/v1/endpoints/ep_missing", bearer(key), nil); r.status != http.StatusNotFound {
			t.Fatalf("GET a missing endpoint: %d", r.status)
		}
	}
	if r := e.do("POST", "/v1/events", bearer(key), `{"type":"user.created","data":{}}`); r.status != http.StatusAccepted {
		t.Fatalf("POST /v1/events: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/events", "", `{"type":"user.created","data":{}}`); r.status != http.StatusUnauthorized {
		t.Fatalf("POST /v1/events without a key: %d", r.status)
	}
	if r := e.do("GET", "/v1/nothing-here", bearer(key), nil); r.status != http.StatusNotFound {
		t.Fatalf("GET an unknown path: %d", r.status)
	}
	if r := e.do("PUT", "/v1/endpoints", bearer(key), nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("PUT /v1/endpoints: %d", r.status)
	}

	for s, n := range want {
		if got := counter(s) - before[s]; got != n {
			t.Errorf("herald_http_requests_total%+v grew by %v, want %v", s, got, n)
		}
	}
	if got := timer("/v1/endpoints/{id}", "GET") - timedBefore; got != 2 {
		t.Errorf("herald_http_request_duration_seconds{route=/v1/endpoints/{id},method=GET} counted %v requests, want 2", got)
	}
	mfs, _ := prometheus.DefaultGatherer.Gather()
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "herald_http_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "ep_missing") || strings.Contains(l.GetValue(), "nothing-here") {
					t.Errorf("%s has a raw path in a label: %v", mf.GetName(), m.GetLabel())
				}
			}
		}
	}
}
