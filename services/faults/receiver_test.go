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
// endpoint is the receiver's key for the endpoint ("a", "b", "d", ...).
type pair struct {
	event    string
	endpoint string
}

// delivery is what the receiver saw of one pair.
type delivery struct {
	typ       string    // "type" in the body
	requests  int       // every verified request
	delivered int       // answered 2xx and the answer written
	first     time.Time // first 2xx
	attempts  []int     // Herald-Attempt of each 2xx
}

// Receiver is the webhook receiver of every endpoint of a row: one HTTP
// server on a fixed loopback port, one path per endpoint (/hook/<key>),
// each verified with its endpoint's secret by the official Standard Webhooks
// library. It can be taken down (its listener closed: connection refused)
// and brought back on the same port, made slow, and told to fail one
// endpoint always.
type Receiver struct {
	addr string

	mu       sync.Mutex
	srv      *http.Server
	whs      map[string]*standardwebhooks.Webhook
	failing  map[string]bool
	latency  time.Duration // every answer waits this long
	got      map[pair]*delivery
	rejects  hooktest.Rejects
	aborted  int // 2xx answers cut off (connection gone, sender timed out)
	requests int
}

// newReceiver listens on a free loopback port; it is closed at t.Cleanup,
// where the test fails if any request did not verify.
func newReceiver(t *testing.T) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{addr: ln.Addr().String(), whs: map[string]*standardwebhooks.Webhook{},
		failing: map[string]bool{}, got: map[pair]*delivery{}}
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

// Register sets the secret endpoint key is verified with; failing makes it
// answer 500 to everything.
func (r *Receiver) Register(t testing.TB, key, secret string, failing bool) {
	t.Helper()
	wh := hooktest.NewWebhook(t, "receiver", secret)
	r.mu.Lock()
	r.whs[key], r.failing[key] = wh, failing
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

// SetLatency makes every answer wait d.
func (r *Receiver) SetLatency(d time.Duration) {
	r.mu.Lock()
	r.latency = d
	r.mu.Unlock()
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
	wh, failing, latency := r.whs[key], r.failing[key], r.latency
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
	d := r.got[p]
	if d == nil {
		d = &delivery{typ: env.Type}
		r.got[p] = d
	}
	d.requests++
	r.mu.Unlock()

	if !hooktest.Stall(req.Context(), latency) { // the sender gave up or went away
		r.mu.Lock()
		r.aborted++
		r.mu.Unlock()
		return
	}
	if failing {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	if err := http.NewResponseController(w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		r.mu.Lock()
		r.aborted++
		r.mu.Unlock()
		return
	}
	now := time.Now()
	r.mu.Lock()
	if d.delivered == 0 {
		d.first = now
	}
	d.delivered++
	d.attempts = append(d.attempts, attempt)
	r.mu.Unlock()
}

// snapshot copies what was received.
func (r *Receiver) snapshot() map[pair]delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[pair]delivery, len(r.got))
	for p, d := range r.got {
		c := *d
		c.attempts = append([]int(nil), d.attempts...)
		out[p] = c
	}
	return out
}

// Delivered is how many pairs were delivered at least once.
func (r *Receiver) Delivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.got {
		if d.delivered > 0 {
			n++
		}
	}
	return n
}

// Has reports whether pair p was delivered.
func (r *Receiver) Has(p pair) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.got[p]
	return d != nil && d.delivered > 0
}

// Counters returns the requests received and the answers cut off.
func (r *Receiver) Counters() (requests, aborted int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, r.aborted
}
