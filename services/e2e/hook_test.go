package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/services/internal/hooktest"
)

// Reply is what a Hook answers to one request: Status after Delay, with
// Header. A zero Status answers 200.
type Reply struct {
	Status int
	Header map[string]string
	Delay  time.Duration
}

// HookReq is one request a Hook got: when it arrived and when the answer
// was written (End), what was answered, and whether it verified.
type HookReq struct {
	N        int // 1-based, in order of arrival
	ID       string
	Attempt  int
	Type     string
	Data     json.RawMessage
	Start    time.Time
	End      time.Time
	Status   int
	Aborted  bool // the client went away before the answer
	Verified bool
}

// Hook is a scripted webhook receiver: every request is verified with the
// official Standard Webhooks library, timed (arrival and end), counted
// while in flight (with the maximum ever in flight), and answered as the
// script says. Unlike Receiver it records every request, whatever its
// answer, so tests can assert on timing and overlap.
type Hook struct {
	t testing.TB
	*hookServer

	mu        sync.Mutex
	wh        *standardwebhooks.Webhook
	script    func(n int, r *HookReq) Reply
	reqs      []*HookReq
	inFlight  int
	maxFlight int
}

// NewHook starts a Hook answering with script (nil: 200 at once). The test
// fails at cleanup if any request did not verify.
func NewHook(t testing.TB, script func(n int, r *HookReq) Reply) *Hook {
	t.Helper()
	h := &Hook{t: t, script: script}
	h.hookServer = startHookServer(t, "hook", h.serve)
	return h
}

// SetSecret sets the secret requests are verified with.
func (h *Hook) SetSecret(secret string) {
	h.t.Helper()
	wh := hooktest.NewWebhook(h.t, "hook", secret)
	h.mu.Lock()
	h.wh = wh
	h.mu.Unlock()
}

// SetScript replaces the script for the requests that arrive from now on.
func (h *Hook) SetScript(script func(n int, r *HookReq) Reply) {
	h.mu.Lock()
	h.script = script
	h.mu.Unlock()
}

func (h *Hook) serve(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 4<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	attempt, _ := strconv.Atoi(req.Header.Get("Herald-Attempt"))
	var env struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(body, &env)

	h.mu.Lock()
	h.inFlight++
	h.maxFlight = max(h.maxFlight, h.inFlight)
	r := &HookReq{N: len(h.reqs) + 1, ID: req.Header.Get("webhook-id"), Attempt: attempt, Type: env.Type, Data: env.Data, Start: start}
	h.reqs = append(h.reqs, r)
	wh, script := h.wh, h.script
	h.mu.Unlock()

	verr := fmt.Errorf("no secret set")
	if wh != nil {
		verr = wh.Verify(body, req.Header)
	}
	var rep Reply
	if script != nil {
		rep = script(r.N, r)
	}
	if rep.Status == 0 {
		rep.Status = http.StatusOK
	}
	if verr != nil {
		rep = Reply{Status: http.StatusBadRequest}
	}
	aborted := !hooktest.Stall(req.Context(), rep.Delay)
	if !aborted {
		for k, v := range rep.Header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.Status)
		_, _ = io.WriteString(w, "hook says "+strconv.Itoa(rep.Status))
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	h.inFlight--
	r.End, r.Status, r.Aborted, r.Verified = time.Now(), rep.Status, aborted, verr == nil
	if verr != nil {
		h.rejects.Add(fmt.Sprintf("webhook-id %q attempt %d: %v", r.ID, attempt, verr))
	}
}

// Reqs returns a copy of every request so far, finished or not (End zero),
// in order of arrival.
func (h *Hook) Reqs() []HookReq {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]HookReq, len(h.reqs))
	for i, r := range h.reqs {
		out[i] = *r
	}
	return out
}

// Finished returns the requests answered so far.
func (h *Hook) Finished() []HookReq {
	var out []HookReq
	for _, r := range h.Reqs() {
		if !r.End.IsZero() {
			out = append(out, r)
		}
	}
	return out
}

// MaxInFlight is the most requests that were ever in flight at once.
func (h *Hook) MaxInFlight() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.maxFlight
}

// Delivered returns how often each event id was answered 2xx.
func (h *Hook) Delivered() map[string]int {
	out := map[string]int{}
	for _, r := range h.Reqs() {
		if !r.End.IsZero() && !r.Aborted && r.Status >= 200 && r.Status < 300 {
			out[r.ID]++
		}
	}
	return out
}

// WaitDelivered waits until every id was answered 2xx at least once.
func (h *Hook) WaitDelivered(t testing.TB, within time.Duration, ids ...string) {
	t.Helper()
	missing := func() []string {
		d := h.Delivered()
		var m []string
		for _, id := range ids {
			if d[id] == 0 {
				m = append(m, id)
			}
		}
		return m
	}
	testenv.Eventually(t, within, func() bool { return len(missing()) == 0 }, "%s", testenv.Lazy(func() string {
		m := missing()
		if len(m) > 10 {
			return fmt.Sprintf("%d of %d events not delivered, e.g. %v", len(m), len(ids), m[:10])
		}
		return fmt.Sprintf("events not delivered: %v", m)
	}))
}

// ---- API helpers ----

// EndpointState is the part of an endpoint these tests look at.
type EndpointState struct {
	ID             string `json:"id"`
	Secret         string `json:"secret"`
	Enabled        bool   `json:"enabled"`
	DisabledReason string `json:"disabled_reason"`
	MaxAttempts    int    `json:"max_attempts"`
	TimeoutMS      int    `json:"timeout_ms"`
}

// CreateEndpointAt registers url for events; extra adds fields.
func (a *API) CreateEndpointAt(t testing.TB, key, url string, events []string, extra map[string]any) EndpointState {
	t.Helper()
	in := map[string]any{"name": "e2e " + t.Name(), "url": url, "events": events}
	for k, v := range extra {
		in[k] = v
	}
	var ep EndpointState
	a.Must(t, "POST", "/v1/endpoints", key, in, http.StatusCreated, &ep)
	if ep.ID == "" || !ep.Enabled || !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("endpoint %+v: want an id, enabled, a whsec_ secret", ep)
	}
	return ep
}

// HookEndpoint registers h for events and sets h's secret.
func (a *API) HookEndpoint(t testing.TB, key string, h *Hook, events []string, extra map[string]any) EndpointState {
	t.Helper()
	ep := a.CreateEndpointAt(t, key, h.URL(), events, extra)
	h.SetSecret(ep.Secret)
	return ep
}

// GetEndpoint reads an endpoint (nil error and ok=false on any failure, for
// use inside Eventually).
func (a *API) GetEndpoint(key, id string) (EndpointState, bool) {
	ctx, cancel := quick()
	defer cancel()
	status, b, err := a.Call(ctx, "GET", "/v1/endpoints/"+id, key, nil)
	var ep EndpointState
	if err != nil || status != http.StatusOK || json.Unmarshal(b, &ep) != nil {
		return ep, false
	}
	return ep, true
}

// DLQEntry is a dead letter as GET /v1/dlq lists it.
type DLQEntry struct {
	ID         uint64 `json:"id"`
	EndpointID string `json:"endpoint_id"`
	Event      struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"event"`
	Reason   string        `json:"reason"`
	Attempts []AttemptView `json:"attempts"`
}

// AttemptView is an attempt as the API shows it (dead letters, history).
type AttemptView struct {
	Attempt        int    `json:"attempt"`
	ResponseStatus int    `json:"response_status"`
	ErrorClass     string `json:"error_class"`
	Error          string `json:"error"`
	State          string `json:"state"`
	EventID        string `json:"event_id"`
}

// DLQ lists the dead letters of one endpoint through the API (ok=false on
// any failure, for Eventually).
func (a *API) DLQ(key, endpoint string) ([]DLQEntry, bool) {
	ctx, cancel := quick()
	defer cancel()
	status, b, err := a.Call(ctx, "GET", "/v1/dlq?endpoint_id="+endpoint, key, nil)
	var p struct {
		Data []DLQEntry `json:"data"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(b, &p) != nil {
		return nil, false
	}
	return p.Data, true
}

// WaitDLQ waits until the endpoint has a dead letter and returns what GET
// /v1/dlq lists then; msgAndArgs is testenv.Eventually's failure message.
// Dead-lettering is asynchronous (the sender gives up, then the DLQ
// consumer stores it), so a test polls rather than reads once.
func (a *API) WaitDLQ(t testing.TB, key, endpoint string, within time.Duration, msgAndArgs ...any) []DLQEntry {
	t.Helper()
	var dl []DLQEntry
	testenv.Eventually(t, within, func() bool {
		var ok bool
		dl, ok = a.DLQ(key, endpoint)
		return ok && len(dl) > 0
	}, msgAndArgs...)
	return dl
}

// AttemptHistory lists an endpoint's attempts, newest first, through the
// API (ok=false on any failure).
func (a *API) AttemptHistory(key, endpoint string) ([]AttemptView, bool) {
	ctx, cancel := quick()
	defer cancel()
	status, b, err := a.Call(ctx, "GET", "/v1/endpoints/"+endpoint+"/attempts?limit=100", key, nil)
	var p struct {
		Data []AttemptView `json:"data"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(b, &p) != nil {
		return nil, false
	}
	return p.Data, true
}

// ---- metrics ----

// Metric sums the samples of a Prometheus counter or gauge a process
// exposes at /metrics whose labels include every one of labels (given as
// `name="value"`). A failed scrape fails the test.
func Metric(t testing.TB, p *testenv.Process, name string, labels ...string) float64 {
	t.Helper()
	v, err := scrape(p.URL(), name, labels...)
	if err != nil {
		t.Fatalf("metrics of %s: %v", p.URL(), err)
	}
	return v
}

func scrape(base, name string, labels ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		metric, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		mname, lbls, _ := strings.Cut(metric, "{")
		if mname != name {
			continue
		}
		parts := strings.Split(strings.TrimSuffix(lbls, "}"), ",")
		if !allIn(labels, parts) {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %v", line, err)
		}
		sum += f
	}
	return sum, sc.Err()
}

func allIn(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// SumMetric is Metric summed over processes.
func SumMetric(t testing.TB, ps []*testenv.Process, name string, labels ...string) float64 {
	t.Helper()
	sum := 0.0
	for _, p := range ps {
		sum += Metric(t, p, name, labels...)
	}
	return sum
}
