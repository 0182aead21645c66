package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
)

const (
	loadEvents      = 2000
	loadConcurrency = 16
	receiverLatency = 20 * time.Millisecond
)

// load posts n events (ids load-0 ... load-<n-1>) over HTTP with conc
// workers, in the background. A 5xx is retried with the same id (bounded).
type load struct {
	ids    []string
	posted atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []string
}

func startLoad(ctx context.Context, api *API, key string, n, conc int) *load {
	l := &load{ids: make([]string, n)}
	for i := range n {
		l.ids[i] = fmt.Sprintf("load-%04d", i)
	}
	next := make(chan string, n)
	for _, id := range l.ids {
		next <- id
	}
	close(next)
	for range conc {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for id := range next {
				body := eventJSON(id, "load.tick", fmt.Sprintf(`{"id":%q}`, id), "")
				var status int
				var err error
				for try := 0; try < 5 && ctx.Err() == nil; try++ {
					status, _, err = api.Call(ctx, "POST", "/v1/events", key, json.RawMessage(body))
					if err == nil && status < 500 {
						break
					}
				}
				if err != nil || status != http.StatusAccepted {
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Sprintf("%s: status %d, %v", id, status, err))
					l.mu.Unlock()
					continue
				}
				l.posted.Add(1)
			}
		}()
	}
	return l
}

// wait waits for the posting to end and fails the test if any event was not
// accepted.
func (l *load) wait(t testing.TB) {
	t.Helper()
	l.wg.Wait()
	if len(l.errs) > 0 {
		t.Fatalf("%d of %d events not accepted; first: %s", len(l.errs), len(l.ids), l.errs[0])
	}
}

func reportDuplicates(t testing.TB, rcv *Receiver) int {
	dups := rcv.Duplicates()
	extra := 0
	var ids []string
	for id, n := range dups {
		extra += n - 1
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(ids) > 10 {
		ids = ids[:10]
	}
	t.Logf("duplicates (allowed, at least once): %d event(s) delivered more than once, %d extra deliveries; e.g. %v", len(dups), extra, ids)
	return len(dups)
}

// runLoadAndStopSender posts 2,000 events through a stack with two senders
// and, once a quarter of them arrived, stops sender A with stop. Every event
// must arrive at least once.
func runLoadAndStopSender(t *testing.T, what string, stop func(*testenv.Process)) (*Stack, *Receiver) {
	s := StartStack(t, 2)
	tn := s.Tenant(t)
	rcv := NewReceiver(t)
	rcv.Delay(receiverLatency)
	s.API.CreateEndpoint(t, tn.APIKey, rcv, []string{"load.*"}, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	start := time.Now()
	l := startLoad(ctx, s.API, tn.APIKey, loadEvents, loadConcurrency)
	testenv.Eventually(t, 30*time.Second, func() bool { return rcv.DistinctDelivered() >= loadEvents/4 },
		"a quarter of the events did not arrive within 30s")
	atStop, posted := rcv.DistinctDelivered(), l.posted.Load()
	a := s.Senders[0]
	stopped := time.Now()
	stop(a)
	t.Logf("%s sender A at %v: %d/%d delivered, %d posted; sender A gone after %v",
		what, stopped.Sub(start).Round(time.Millisecond), atStop, loadEvents, posted, time.Since(stopped).Round(time.Millisecond))
	if atStop >= loadEvents {
		t.Fatalf("everything was delivered before sender A was stopped: the test proves nothing")
	}
	if a.Running() {
		t.Fatalf("sender A still running")
	}

	l.wait(t)
	rcv.WaitDelivered(t, 30*time.Second, l.ids...)
	t.Logf("all %d events delivered %v after the first was posted; %d answers cut off by the stop",
		loadEvents, time.Since(start).Round(time.Millisecond), rcv.Aborted())
	if !s.Senders[1].Running() {
		t.Fatalf("sender B died")
	}
	s.Bus.WaitQuiet(t, tn.ID, 15*time.Second)
	return s, rcv
}

// TestSenderKilledMidLoad: kill -9 of one of two senders loses nothing; the
// jobs it held reach the other sender after AckWait (2s).
func TestSenderKilledMidLoad(t *testing.T) {
	t.Parallel()
	_, rcv := runLoadAndStopSender(t, "SIGKILL", func(p *testenv.Process) { p.Kill() })
	reportDuplicates(t, rcv)
}

// TestSenderGracefulStopMidLoad: SIGTERM of one of two senders mid-load lets
// its requests finish and acks them; nothing is lost.
func TestSenderGracefulStopMidLoad(t *testing.T) {
	t.Parallel()
	_, rcv := runLoadAndStopSender(t, "SIGTERM", func(p *testenv.Process) {
		p.Stop()
		if err := p.ExitErr(); err != nil {
			t.Errorf("sender A did not exit cleanly on SIGTERM (within 10s): %v", err)
		}
	})
	reportDuplicates(t, rcv)
	if n := rcv.Aborted(); n > 0 {
		t.Errorf("a graceful stop cut off %d requests in flight", n)
	}
}
