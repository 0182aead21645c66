package faults

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/services/internal/hooktest"
)

// pair is one (event, endpoint) delivery job as the ledger counts it;
// endpoint is the receiver's key for the endpoint ("ok", "ff", "af", "p").
type pair struct {
	event    string
	endpoint string
}

// request is one verified request the receiver got for a pair.
type request struct {
	attempt int       // Herald-Attempt
	at      time.Time // when it arrived
	status  int       // what the receiver answered; 0 when it was cut off before answering
	written bool      // the answer was written to the connection (Herald may still lose it)
}

// received is everything the receiver got for one pair, in arrival order.
type received struct {
	typ      string // "type" in the first body
	requests []request
}

// attempts are the Herald-Attempt numbers of the requests, in arrival order.
func (r received) attempts() []int {
	out := make([]int, len(r.requests))
	for i, q := range r.requests {
		out[i] = q.attempt
	}
	return out
}

// delivered is when the first 2xx answer was written, or zero.
func (r received) delivered() time.Time {
	for _, q := range r.requests {
		if q.written && q.status >= 200 && q.status < 300 {
			return q.at
		}
	}
	return time.Time{}
}

// Receiver is the webhook receiver of every endpoint of a row: one HTTP
// server on a fixed loopback port, one path per endpoint (/hook/<key>),
// each verified with its endpoint's secret by the official Standard Webhooks
// library. It records every request per (webhook-id, endpoint) with its
// Herald-Attempt, and answers as the endpoint's behaviour says, deciding by
// its own records, never by the attempt number Herald sent: a first-fail
// endpoint fails the first request it sees of each event and accepts every
// later one. It can be taken down (its listener closed: connection refused)
// and brought back on the same port, and made slow.
type Receiver struct {
	addr string

	mu       sync.Mutex
	srv      *http.Server
	whs      map[string]*standardwebhooks.Webhook
	behave   map[string]behaviour
	latency  time.Duration            // every answer waits this long...
	slow     map[string]time.Duration // ...or this long, for these endpoints
	got      map[pair]*received
	rejects  hooktest.Rejects
	aborted  int // answers cut off (connection gone, sender timed out)
	requests int
}

// behaviour is how an endpoint answers.
type behaviour int

const (
	healthy    behaviour = iota // 204 to every request
	firstFail                   // 500 to the first request of each event, 204 to the others
	alwaysFail                  // 500 to every request
)

// newReceiver listens on a free loopback port; it is closed at t.Cleanup,
// where the test fails if any request did not verify.
func newReceiver(t *testing.T) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{addr: ln.Addr().String(), whs: map[string]*standardwebhooks.Webhook{},
		behave: map[string]behaviour{}, slow: map[string]time.Duration{}, got: map[pair]*received{}}
	r.serve(ln)
	t.Cleanup(func() {
		r.Down()
		r.rejects.Report(t, "receiver")
	})
	return r
}

func (r *Receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// URL is the webhook URL of endpoint key.
func (r *Receiver) URL(key string) string { return "http://" + r.addr + "/hook/" + key }

// Register sets the secret endpoint key is verified with and how it answers.
func (r *Receiver) Register(t testing.TB, key, secret string, b behaviour) {
	t.Helper()
	wh := hooktest.NewWebhook(t, "receiver", secret)
	r.mu.Lock()
	r.whs[key], r.behave[key] = wh, b
	r.mu.Unlock()
}

// Down closes the listener and every connection: new connections are
// refused, requests being answered are cut off.
func (r *Receiver) Down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Up listens again on the same port.
func (r *Receiver) Up(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port is ours; a moment may pass before the kernel lets go
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			r.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("receiver: listen again on %s: %v", r.addr, err)
}

// SetLatency makes every answer wait d, except those of endpoints given a
// latency of their own.
func (r *Receiver) SetLatency(d time.Duration) {
	r.mu.Lock()
	r.latency = d
	r.mu.Unlock()
}

// SetEndpointLatency makes endpoint key's answers wait d; 0 returns it to
// the common latency.
func (r *Receiver) SetEndpointLatency(key string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d == 0 {
		delete(r.slow, key)
		return
	}
	r.slow[key] = d
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		return
	}
	key, _ := strings.CutPrefix(req.URL.Path, "/hook/")
	id := req.Header.Get("webhook-id")
	attempt, _ := strconv.Atoi(req.Header.Get("Herald-Attempt"))
	var env struct {
		Type string `json:"type"`
	}
	r.mu.Lock()
	wh, b := r.whs[key], r.behave[key]
	latency, ok := r.slow[key]
	if !ok {
		latency = r.latency
	}
	r.requests++
	r.mu.Unlock()
	var verr error
	switch {
	case wh == nil:
		verr = fmt.Errorf("no endpoint %q", key)
	case attempt < 1:
		verr = fmt.Errorf("Herald-Attempt %q", req.Header.Get("Herald-Attempt"))
	default:
		verr = wh.Verify(body, req.Header)
	}
	if verr == nil {
		verr = json.Unmarshal(body, &env)
	}
	if verr != nil {
		r.rejects.Add(fmt.Sprintf("%s webhook-id %q: %v", key, id, verr))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	p := pair{event: id, endpoint: key}
	r.mu.Lock()
	got := r.got[p]
	if got == nil {
		got = &received{typ: env.Type}
		r.got[p] = got
	}
	status := http.StatusNoContent
	if b == alwaysFail || b == firstFail && len(got.requests) == 0 {
		status = http.StatusInternalServerError
	}
	n := len(got.requests)
	got.requests = append(got.requests, request{attempt: attempt, at: time.Now()})
	r.mu.Unlock()

	if !hooktest.Stall(req.Context(), latency) { // the sender gave up or went away
		r.mu.Lock()
		r.aborted++
		r.mu.Unlock()
		return
	}
	w.WriteHeader(status)
	err = http.NewResponseController(w).Flush()
	written := err == nil || errors.Is(err, http.ErrNotSupported)
	r.mu.Lock()
	got.requests[n].status, got.requests[n].written = status, written
	if !written {
		r.aborted++
	}
	r.mu.Unlock()
}

// snapshot copies what was received.
func (r *Receiver) snapshot() map[pair]received {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[pair]received, len(r.got))
	for p, g := range r.got {
		out[p] = received{typ: g.typ, requests: append([]request(nil), g.requests...)}
	}
	return out
}

// Delivered is how many pairs of endpoint key got a 2xx answer written.
func (r *Receiver) Delivered(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for p, g := range r.got {
		if p.endpoint == key && !g.delivered().IsZero() {
			n++
		}
	}
	return n
}

// Has reports whether pair p got a 2xx answer written.
func (r *Receiver) Has(p pair) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got[p]
	return g != nil && !g.delivered().IsZero()
}

// Counters returns the requests received and the answers cut off.
func (r *Receiver) Counters() (requests, aborted int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, r.aborted
}
