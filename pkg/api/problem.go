package api

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldhq/herald/pkg/valid"
)

// Problem is an RFC 9457 problem document. Errors lists field-level
// validation failures, every one of them, not just the first.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   valid.Errors `json:"errors,omitempty"`
	// Limit is set on 413 answers: the largest body accepted, in bytes
	// (for events: the largest data accepted); and on 431 answers: the
	// most bytes of request line and header fields accepted.
	Limit int64 `json:"limit,omitempty"`
}

const problemBase = "https://herald.dev/problems/"

// writeProblem answers with a problem document.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = r.URL.Path
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func badRequest(w http.ResponseWriter, r *http.Request, detail string) {
	writeProblem(w, r, Problem{Type: problemBase + "malformed-request", Title: "Malformed request", Status: http.StatusBadRequest, Detail: detail})
}

func notFound(w http.ResponseWriter, r *http.Request, what string) {
	writeProblem(w, r, Problem{Type: problemBase + "not-found", Title: "Not found", Status: http.StatusNotFound, Detail: what + " not found"})
}

func unauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	writeProblem(w, r, Problem{Type: problemBase + "unauthorized", Title: "Unauthorized", Status: http.StatusUnauthorized, Detail: detail})
}

func internal(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, Problem{Type: problemBase + "internal", Title: "Internal error", Status: http.StatusInternalServerError,
		Detail: "the request could not be completed; it is safe to retry"})
}

func unavailable(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("Retry-After", "1")
	writeProblem(w, r, Problem{Type: problemBase + "unavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: detail})
}

// retryAfter sets Retry-After to wait in whole seconds, at least 1, and
// returns them.
func retryAfter(w http.ResponseWriter, wait time.Duration) int64 {
	secs := max(int64(math.Ceil(wait.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	return secs
}

// invalid answers 422 with every field error when err is a validation
// failure, and reports whether it did.
func invalid(w http.ResponseWriter, r *http.Request, err error) bool {
	var ve valid.Errors
	if !errors.As(err, &ve) {
		return false
	}
	writeProblem(w, r, Problem{Type: problemBase + "validation", Title: "Invalid request", Status: http.StatusUnprocessableEntity,
		Detail: "one or more fields are invalid", Errors: ve})
	return true
}

// Starting answers every request with 503 and Retry-After, as a problem
// document: what a process serves in the API's place while it is still
// connecting to NATS and setting up its streams, so that a client told to
// come back (rather than a 404 of an unknown route) does.
func Starting() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unavailable(w, r, "Herald is starting; try again shortly")
	})
}
