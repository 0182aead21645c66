package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/services/internal/hooktest"
)

// Request is one request the receiver got, verified or not.
type Request struct {
	Attempt  int // Herald-Attempt
	Header   http.Header
	Body     []byte
	Status   int // what the receiver answered
	Verified bool
	At       time.Time
}

// eventLog is everything received for one webhook-id.
type eventLog struct {
	requests  []Request
	delivered int // requests answered 2xx
}

// Receiver is a webhook receiver on 127.0.0.1 that verifies every request
// with the official Standard Webhooks library and records what arrived per
// event id (webhook-id). It can be told to fail the first K requests of each
// event, or every request, with a given status, and to answer slowly.
// Methods are safe for concurrent use; Wait* must be called from the test's
// goroutine.
type Receiver struct {
	t testing.TB
	*hookServer

	mu         sync.Mutex
	wh         *standardwebhooks.Webhook
	failFirst  int
	failStatus int
	always     bool
	delay      time.Duration
	events     map[string]*eventLog
	order      []string // event ids in order of first request
	aborted    int      // requests whose connection went away while answering
}

// NewReceiver starts a receiver, closed at t.Cleanup, at which point the
// test fails if any request did not verify.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{t: t, events: map[string]*eventLog{}}
	r.hookServer = startHookServer(t, "receiver", r.serve)
	return r
}

// hookServer is the HTTP side that Receiver and Hook share: a server on
// 127.0.0.1 that takes webhooks at /hook and is closed at t.Cleanup, after
// which the test fails for every request that did not verify (handlers
// record those in rejects).
type hookServer struct {
	srv     *httptest.Server
	rejects hooktest.Rejects
}

// startHookServer serves handler; who names the receiver in failures.
func startHookServer(t testing.TB, who string, handler http.HandlerFunc) *hookServer {
	s := &hookServer{srv: httptest.NewServer(handler)} // 127.0.0.1:0
	t.Cleanup(func() {
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.rejects.Report(t, who)
	})
	return s
}

// URL is the webhook URL to register.
func (s *hookServer) URL() string { return s.srv.URL + "/hook" }

// SetSecret sets the endpoint secret (whsec_...) requests are verified with.
func (r *Receiver) SetSecret(secret string) {
	r.t.Helper()
	if !strings.HasPrefix(secret, "whsec_") {
		r.t.Fatalf("receiver: secret %q is not a whsec_ secret", secret)
	}
	wh := hooktest.NewWebhook(r.t, "receiver", secret)
	r.mu.Lock()
	r.wh = wh
	r.mu.Unlock()
}

// FailFirst makes the first k requests of every event id answer 500.
func (r *Receiver) FailFirst(k int) {
	r.mu.Lock()
	r.failFirst, r.failStatus = k, http.StatusInternalServerError
	r.mu.Unlock()
}

// AlwaysFail makes every request answer status.
func (r *Receiver) AlwaysFail(status int) {
	r.mu.Lock()
	r.always, r.failStatus = true, status
	r.mu.Unlock()
}

// Heal undoes AlwaysFail: requests succeed again.
func (r *Receiver) Heal() {
	r.mu.Lock()
	r.always = false
	r.mu.Unlock()
}

// Delay makes successful answers wait d (a slow receiver).
func (r *Receiver) Delay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 4<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	now := time.Now()
	id := req.Header.Get("webhook-id")
	attempt, aerr := strconv.Atoi(req.Header.Get("Herald-Attempt"))

	r.mu.Lock()
	wh := r.wh
	r.mu.Unlock()
	var verr error
	switch {
	case wh == nil:
		verr = fmt.Errorf("no secret set")
	case req.Method != http.MethodPost:
		verr = fmt.Errorf("method %s, want POST", req.Method)
	case req.URL.Path != "/hook":
		verr = fmt.Errorf("path %s, want /hook", req.URL.Path)
	case aerr != nil || attempt < 1:
		verr = fmt.Errorf("Herald-Attempt %q is not a positive number", req.Header.Get("Herald-Attempt"))
	default:
		verr = wh.Verify(body, req.Header) // the official library, timestamp tolerance included
	}

	r.mu.Lock()
	ev := r.events[id]
	if ev == nil {
		ev = &eventLog{}
		r.events[id] = ev
		r.order = append(r.order, id)
	}
	n := len(ev.requests) + 1
	status := http.StatusOK
	switch {
	case verr != nil:
		status = http.StatusBadRequest
		r.rejects.Add(fmt.Sprintf("webhook-id %q attempt %q: %v", id, req.Header.Get("Herald-Attempt"), verr))
	case r.always:
		status = r.failStatus
	case n <= r.failFirst:
		status = r.failStatus
	}
	delay := r.delay
	rec := Request{Attempt: attempt, Header: req.Header.Clone(), Body: body, Status: status, Verified: verr == nil, At: now}
	if status >= 300 {
		ev.requests = append(ev.requests, rec)
	}
	r.mu.Unlock()

	if status >= 300 {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "receiver says no")
		return
	}
	if !hooktest.Stall(req.Context(), delay) { // the sender went away (killed) mid-request
		r.mu.Lock()
		r.aborted++
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	ev.requests = append(ev.requests, rec)
	ev.delivered++
	r.mu.Unlock()
	w.WriteHeader(status)
}

// Delivered is how many requests for event id were answered 2xx.
func (r *Receiver) Delivered(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev := r.events[id]; ev != nil {
		return ev.delivered
	}
	return 0
}

// Attempts is the Herald-Attempt header of every request for id, in order
// of arrival.
func (r *Receiver) Attempts(id string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	if ev := r.events[id]; ev != nil {
		for _, q := range ev.requests {
			out = append(out, q.Attempt)
		}
	}
	return out
}

// Requests returns every request recorded for id.
func (r *Receiver) Requests(id string) []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev := r.events[id]; ev != nil {
		return slices.Clone(ev.requests)
	}
	return nil
}

// Body is the body of the first 2xx delivery of id, or nil.
func (r *Receiver) Body(id string) []byte {
	for _, q := range r.Requests(id) {
		if q.Status < 300 {
			return q.Body
		}
	}
	return nil
}

// IDs returns the event ids seen, in order of first arrival.
func (r *Receiver) IDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

// DistinctDelivered is how many event ids were delivered at least once.
func (r *Receiver) DistinctDelivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.delivered > 0 {
			n++
		}
	}
	return n
}

// Duplicates returns, for every id delivered more than once, how often.
func (r *Receiver) Duplicates() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for id, ev := range r.events {
		if ev.delivered > 1 {
			out[id] = ev.delivered
		}
	}
	return out
}

// Aborted is how many successful answers were cut off because the sender
// went away while the receiver was answering.
func (r *Receiver) Aborted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted
}

// Missing returns the ids among want not yet delivered.
func (r *Receiver) Missing(want []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range want {
		if ev := r.events[id]; ev == nil || ev.delivered == 0 {
			out = append(out, id)
		}
	}
	return out
}

// WaitDelivered waits until every id was delivered at least once.
func (r *Receiver) WaitDelivered(t testing.TB, within time.Duration, ids ...string) {
	t.Helper()
	testenv.Eventually(t, within, func() bool { return len(r.Missing(ids)) == 0 }, "%s", testenv.Lazy(func() string {
		m := r.Missing(ids)
		sort.Strings(m)
		if len(m) > 10 {
			return fmt.Sprintf("%d of %d events not delivered, e.g. %v", len(m), len(ids), m[:10])
		}
		return fmt.Sprintf("events not delivered: %v", m)
	}))
}
