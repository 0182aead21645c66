package listen_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/listen"
	"github.com/heraldhq/herald/pkg/store"
)

// pair is a relay serving one listen endpoint as an API process would, a
// CLI answering its requests with answer, and the senders' client.
type pair struct {
	t      *testing.T
	nc     *nats.Conn
	relay  *listen.Relay
	client *deliver.Client
	mu     sync.Mutex
	got    []listen.Request
}

func newPair(t *testing.T) *pair {
	js := testenv.JetStream(t)
	nc := js.Conn()
	return &pair{t: t, nc: nc, relay: listen.NewRelay(nc),
		client: deliver.New(deliver.WithProtocol(store.ListenScheme, listen.NewTransport(nc)))}
}

// serve runs the relay of endpoint id until the returned stop is called;
// answer plays the CLI (nil: never answers).
//
// stop waits for the answers given to finish first: the sender's client
// has its answer as soon as the relay holding the request takes it, before
// the relay has acknowledged it to Respond, and a test that ended then
// closed the connection under a Respond still waiting.
func (p *pair) serve(id string, answer func(listen.Request) listen.Response) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var answering sync.WaitGroup
	go func() {
		done <- p.relay.Serve(ctx, id, nil, func(req listen.Request) error {
			p.mu.Lock()
			p.got = append(p.got, req)
			p.mu.Unlock()
			if answer != nil {
				answering.Add(1)
				go func() {
					defer answering.Done()
					resp := answer(req)
					resp.RequestID = req.ID
					if err := p.relay.Respond(context.Background(), id, resp); err != nil {
						p.t.Errorf("respond: %v", err)
					}
				}()
			}
			return nil
		})
	}()
	// Serving once a ping is answered.
	testenv.Eventually(p.t, 5*time.Second, func() bool {
		on, _ := listen.Listening(context.Background(), p.nc, id)
		return on
	}, "relay of %s not serving", id)
	return func() {
		answering.Wait()
		cancel()
		if err := <-done; err != nil {
			p.t.Errorf("Serve: %v", err)
		}
	}
}

func (p *pair) do(id string, timeout time.Duration) deliver.Outcome {
	h := http.Header{}
	h.Set("webhook-id", "evt_1")
	h.Set("Content-Type", "application/json")
	return p.client.Do(context.Background(), deliver.Request{URL: store.ListenURL(id), Header: h, Body: []byte(`{"type":"post.published"}`), Timeout: timeout})
}

// A request reaches the CLI as the sender built it, and the CLI's answer
// is the attempt's outcome: status, headers, body.
func TestRoundTrip(t *testing.T) {
	p := newPair(t)
	defer p.serve("ep_a", func(req listen.Request) listen.Response {
		h := http.Header{}
		h.Set("Retry-After", "7")
		return listen.Response{Status: http.StatusServiceUnavailable, Header: h, Body: []byte("busy: " + string(req.Body))}
	})()
	o := p.do("ep_a", 5*time.Second)
	if o.Status != http.StatusServiceUnavailable || o.Class != deliver.ServerError || o.RetryAfter != 7*time.Second {
		t.Fatalf("outcome %+v: want 503, server_error, Retry-After 7s", o)
	}
	if string(o.Body) != `busy: {"type":"post.published"}` {
		t.Fatalf("body %q", o.Body)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.got) != 1 {
		t.Fatalf("relayed %d requests, want 1", len(p.got))
	}
	req := p.got[0]
	if req.Method != http.MethodPost || req.Header.Get("webhook-id") != "evt_1" || !strings.HasPrefix(req.Header.Get("User-Agent"), "Herald") ||
		string(req.Body) != `{"type":"post.published"}` || req.ID == "" || time.Until(req.Deadline) <= 0 {
		t.Fatalf("relayed request %+v", req)
	}
}

// With no CLI connected an attempt fails at once as a connection failure,
// to be retried on the endpoint's schedule.
func TestNotListening(t *testing.T) {
	p := newPair(t)
	start := time.Now()
	o := p.do("ep_nobody", 5*time.Second)
	if o.Class != deliver.Connection || !strings.Contains(o.Err, "no herald listen is connected") {
		t.Fatalf("outcome %+v: want a connection failure naming herald listen", o)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v: want at once", d)
	}
}

// A CLI whose local server did not answer reports why; the attempt fails
// with that text.
func TestLocalServerDown(t *testing.T) {
	p := newPair(t)
	defer p.serve("ep_b", func(listen.Request) listen.Response {
		return listen.Response{Error: "dial tcp 127.0.0.1:3000: connect: connection refused"}
	})()
	o := p.do("ep_b", 5*time.Second)
	if o.Class != deliver.Connection || !strings.Contains(o.Err, "connection refused") {
		t.Fatalf("outcome %+v", o)
	}
}

// An answer that does not come in time is a timeout; given later, the API
// is told nobody waits for it.
func TestTimeoutAndLateAnswer(t *testing.T) {
	p := newPair(t)
	defer p.serve("ep_c", nil)()
	o := p.do("ep_c", 300*time.Millisecond)
	if o.Class != deliver.Timeout {
		t.Fatalf("outcome %+v: want a timeout", o)
	}
	p.mu.Lock()
	id := p.got[0].ID
	p.mu.Unlock()
	// Pruned once its deadline passed (within a second).
	testenv.Eventually(t, 5*time.Second, func() bool {
		return errors.Is(p.relay.Respond(context.Background(), "ep_c", listen.Response{RequestID: id, Status: 200}), listen.ErrNotWaiting)
	}, "a late answer was taken")
}

// When the stream closes, its waiting attempts fail at once instead of
// waiting out their timeout.
func TestStreamClosedFailsWaiting(t *testing.T) {
	p := newPair(t)
	stop := p.serve("ep_d", nil)
	res := make(chan deliver.Outcome, 1)
	go func() { res <- p.do("ep_d", 20*time.Second) }()
	testenv.Eventually(t, 5*time.Second, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.got) == 1 }, "not relayed")
	start := time.Now()
	stop()
	o := <-res
	if o.Class != deliver.Connection || !strings.Contains(o.Err, "stream closed") || time.Since(start) > 5*time.Second {
		t.Fatalf("outcome %+v after %v", o, time.Since(start))
	}
}

// The sweeper deletes a listen endpoint nobody listens to once the grace
// period has passed, never one a CLI listens to, and drops an index entry
// whose endpoint is gone.
func TestSweeper(t *testing.T) {
	ctx := context.Background()
	js := testenv.JetStream(t)
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tn, _, err := st.CreateTenant(ctx, "sweep")
	if err != nil {
		t.Fatal(err)
	}
	mk := func() store.Endpoint {
		e, err := st.CreateListenEndpoint(ctx, tn.ID, store.Endpoint{Name: "l", Events: []string{"*"}, Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	kept, left, gone := mk(), mk(), mk()
	if kept.URL != store.ListenURL(kept.ID) {
		t.Fatalf("url %q", kept.URL)
	}
	if err := st.DeleteEndpoint(ctx, tn.ID, gone.ID); err != nil {
		t.Fatal(err)
	}
	p := &pair{t: t, nc: js.Conn(), relay: listen.NewRelay(js.Conn())}
	defer p.serve(kept.ID, nil)()
	sw := listen.NewSweeper(js.Conn(), st, listen.WithGrace(200*time.Millisecond))
	// The first round only notes who is idle: nothing goes before its grace.
	if err := sw.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetEndpoint(ctx, tn.ID, left.ID); err != nil {
		t.Fatalf("deleted in the first round: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		if err := sw.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := st.GetEndpoint(ctx, tn.ID, left.ID)
		return errors.Is(err, store.ErrNotFound)
	}, "the unlistened endpoint was not swept")
	if _, err := st.GetEndpoint(ctx, tn.ID, kept.ID); err != nil {
		t.Fatalf("the listened endpoint was swept: %v", err)
	}
	refs, err := st.ListenEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].ID != kept.ID {
		t.Fatalf("listen index %v: want only %s", refs, kept.ID)
	}
}

// Nobody can point an endpoint at a listener: a listen URL names its own
// endpoint only.
func TestListenURLIsItsOwn(t *testing.T) {
	e := store.Endpoint{ID: "ep_x", Name: "n", URL: store.ListenURL("ep_other"), Events: []string{"*"}, Signature: "none"}
	e.ApplyDefaults()
	if err := e.Validate(); err == nil || !strings.Contains(err.Error(), "url") {
		t.Fatalf("validate %q on ep_x: %v, want a url error", e.URL, err)
	}
	e.URL = store.ListenURL("ep_x")
	if err := e.Validate(); err != nil {
		t.Fatalf("validate own listen URL: %v", err)
	}
}
