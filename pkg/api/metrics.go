package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The API's request metrics are labelled by route, the pattern that served
// the request ("/v1/endpoints/{id}"), never by the raw path: ids in paths
// would make a series per endpoint.
var (
	httpRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_http_requests_total",
		Help: "API requests by route (the pattern that served it; unmatched when none did), method and status.",
	}, []string{"route", "method", "status"})
	httpDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "herald_http_request_duration_seconds",
		Help:    "API requests from the headers read to the handler's return, by route and method (the attempt stream counts its whole connection).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method"})
)

// unmatched is the route label of requests no route took: 404s, 405s, and
// requests refused before routing (414, 431).
const unmatched = "unmatched"

// routeLabel is the path of the pattern ServeMux chose for r ("GET
// /v1/events/{id}" gives "/v1/events/{id}"); the catch-all "/" is no route.
func routeLabel(r *http.Request) string {
	p := r.Pattern
	if _, path, ok := strings.Cut(p, " "); ok {
		p = path
	}
	if p == "" || p == "/" {
		return unmatched
	}
	return p
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// observe counts a finished request.
func observe(r *http.Request, status int, took time.Duration) {
	route, method := routeLabel(r), methodLabel(r.Method)
	httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	httpDuration.WithLabelValues(route, method).Observe(took.Seconds())
}

// statusWriter remembers the status a handler answered with. Unwrap lets
// http.ResponseController reach the connection (flushes of the attempt
// stream, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status sent: 200 when the handler wrote nothing.
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// unwrap returns the server's own ResponseWriter under w, for what needs
// it rather than a wrapper: http.MaxBytesReader closes the connection
// after a body over its limit only when given the server's writer.
func unwrap(w http.ResponseWriter) http.ResponseWriter {
	if sw, ok := w.(*statusWriter); ok {
		return sw.ResponseWriter
	}
	return w
}
