package service_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/service"
)

// The test sends here go through two API processes sharing one NATS and
// one Redis: the limits hold across replicas.

// testSendAnswer is one answer to POST /v1/endpoints/{id}/test.
type testSendAnswer struct {
	status     int
	retryAfter string
	problem    string // the problem document's type, on errors
	ctype      string
}

func postTest(t *testing.T, c *http.Client, base, key, epID string) testSendAnswer {
	req, _ := http.NewRequest("POST", base+"/v1/endpoints/"+epID+"/test", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return testSendAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p struct{ Type string }
	_ = json.Unmarshal(b, &p)
	return testSendAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), problem: p.Type, ctype: resp.Header.Get("Content-Type")}
}

// hammer sends test sends from workers goroutines, alternating between the
// API processes, until n are sent or, with a pace, for the duration d with
// each worker pausing pace between its sends. It returns every answer and
// how long it took.
func hammer(t *testing.T, bases []string, key, epID string, n, workers int, d, pace time.Duration) ([]testSendAnswer, time.Duration) {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	t.Cleanup(c.CloseIdleConnections)
	var mu sync.Mutex
	var answers []testSendAnswer
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(sent.Add(1)) - 1
				if (n > 0 && i >= n) || (d > 0 && time.Since(start) >= d) {
					return
				}
				a := postTest(t, c, bases[i%len(bases)], key, epID)
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
				time.Sleep(pace) // the sending rate, not a wait for a condition
			}
		})
	}
	wg.Wait()
	return answers, time.Since(start)
}

// checkRefusals asserts that every answer is 200 or a 429 problem of type
// want with Retry-After, and returns how many were 200.
func checkRefusals(t *testing.T, answers []testSendAnswer, want string, maxRetryAfter int) (ok int) {
	t.Helper()
	for _, a := range answers {
		switch a.status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			var secs int
			if _, err := fmt.Sscan(a.retryAfter, &secs); err != nil || secs < 1 || secs > maxRetryAfter {
				t.Fatalf("429 with Retry-After %q, want 1 to %d seconds", a.retryAfter, maxRetryAfter)
			}
			if a.problem != "https://herald.dev/problems/"+want || a.ctype != "application/problem+json" {
				t.Fatalf("429 with problem type %q (%s), want %s", a.problem, a.ctype, want)
			}
		default:
			t.Fatalf("test send answered %d, want 200 or 429", a.status)
		}
	}
	return ok
}

func startAPIs(t *testing.T, cfg service.Config) []string {
	natsURL := testenv.NATS(t)
	redisURL, prefix := testenv.Redis(t)
	cfg.Roles = service.Roles{API: true}
	cfg.NATSURL, cfg.RedisURL, cfg.RedisPrefix, cfg.HTTPAddr = natsURL, redisURL, prefix, "127.0.0.1:0"
	cfg.AdminToken, cfg.EgressAllowPrivate, cfg.LogLevel, cfg.EncryptionKey = testAdmin, true, "warn", testEncryptionKey
	return []string{start(t, cfg), start(t, cfg)}
}

// Test sends obey the endpoint's limits, shared with its deliveries and
// across API replicas: its rate_limit, and the concurrency cap against a
// receiver that never answers. Before, 5,000 tests reached a rate_limit: 1
// endpoint in 4.6 s, and 1,000 connections were held at once to a
// receiver that never answered.
func TestTestSendsObeyEndpointLimits(t *testing.T) {
	const concurrency = 5
	bases := startAPIs(t, service.Config{EndpointConcurrency: concurrency, TenantTestSendsPerSecond: 100000})
	tn := mustCall(t, 201, "POST", bases[0]+"/v1/tenants", testAdmin, map[string]any{"name": "tests"})
	key := tn["api_key"].(string)

	t.Run("RateLimit", func(t *testing.T) {
		rcv := newCounter(t, nil)
		ep := mustCall(t, 201, "POST", bases[0]+"/v1/endpoints", key, map[string]any{"name": "slow", "url": rcv.URL, "events": []string{"*"}, "rate_limit": 1})
		answers, took := hammer(t, bases, key, ep["id"].(string), 0, 10, 3*time.Second, 20*time.Millisecond)
		// Retry-After is the wait rounded up: at 1/s, 1 s, or 2 s when a
		// refusal lands just after the next slot was taken.
		ok := checkRefusals(t, answers, "endpoint-limited", 2)
		// GCRA at 1/s with a burst of 1: one at once, then one a second.
		least, most := int(took.Seconds()), 2+int(took.Seconds())
		t.Logf("%d test sends in %s: %d sent, %d refused; the receiver saw %d", len(answers), took.Round(time.Millisecond), ok, len(answers)-ok, rcv.total.Load())
		if got := int(rcv.total.Load()); got != ok || ok < least || ok > most {
			t.Fatalf("the receiver saw %d requests (%d answered 200) in %s; want %d to %d at rate_limit 1", got, ok, took, least, most)
		}
	})

	t.Run("ConcurrencyCap", func(t *testing.T) {
		stop := make(chan struct{})
		rcv := newCounter(t, stop) // never answers
		ep := mustCall(t, 201, "POST", bases[0]+"/v1/endpoints", key, map[string]any{"name": "mute", "url": rcv.URL, "events": []string{"*"}, "timeout_ms": 3000})
		answers, took := hammer(t, bases, key, ep["id"].(string), 100, 100, 0, 0)
		close(stop)
		// Retry-After is the wait rounded up: at 1/s, 1 s, or 2 s when a
		// refusal lands just after the next slot was taken.
		ok := checkRefusals(t, answers, "endpoint-limited", 2)
		t.Logf("100 concurrent test sends in %s: %d sent, %d refused; at most %d in flight at the receiver", took.Round(time.Millisecond), ok, 100-ok, rcv.maxInFlight.Load())
		if got := int(rcv.total.Load()); got != ok {
			t.Fatalf("the receiver saw %d requests, %d test sends answered 200", got, ok)
		}
		if m := rcv.maxInFlight.Load(); m != concurrency {
			t.Fatalf("at most %d requests in flight at the receiver, want the cap of %d", m, concurrency)
		}
	})
}

// Each tenant may make HERALD_TENANT_TEST_SENDS_PER_SECOND test sends a
// second, across API replicas; another tenant is unaffected.
func TestTestSendsLimitedPerTenant(t *testing.T) {
	const rate = 10
	bases := startAPIs(t, service.Config{TenantTestSendsPerSecond: rate})
	rcv := newCounter(t, nil)
	var keys, eps []string
	for _, name := range []string{"busy", "other"} {
		tn := mustCall(t, 201, "POST", bases[0]+"/v1/tenants", testAdmin, map[string]any{"name": name})
		keys = append(keys, tn["api_key"].(string))
		ep := mustCall(t, 201, "POST", bases[0]+"/v1/endpoints", tn["api_key"].(string), map[string]any{"name": "r", "url": rcv.URL, "events": []string{"*"}})
		eps = append(eps, ep["id"].(string))
	}
	answers, took := hammer(t, bases, keys[0], eps[0], 0, 10, 2*time.Second, 20*time.Millisecond)
	ok := checkRefusals(t, answers, "rate-limited", 1)
	// The burst at once, then the rate.
	least, most := rate*int(took.Seconds()), rate+int(took.Seconds()*rate)+1
	t.Logf("%d test sends in %s: %d sent, %d refused", len(answers), took.Round(time.Millisecond), ok, len(answers)-ok)
	if got := int(rcv.total.Load()); got != ok || ok < least || ok > most {
		t.Fatalf("the receiver saw %d requests (%d answered 200) in %s; want %d to %d", got, ok, took, least, most)
	}
	if a := postTest(t, http.DefaultClient, bases[1], keys[1], eps[1]); a.status != http.StatusOK {
		t.Fatalf("another tenant's test send answered %d, want 200", a.status)
	}
}

// counter is a receiver that counts requests and those in flight; with a
// stop channel it answers none until stop closes (or the caller gives up).
type counter struct {
	*httptest.Server
	total, inFlight, maxInFlight atomic.Int64
}

func newCounter(t *testing.T, stop <-chan struct{}) *counter {
	c := &counter{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.total.Add(1)
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		for m := c.maxInFlight.Load(); n > m && !c.maxInFlight.CompareAndSwap(m, n); m = c.maxInFlight.Load() {
		}
		if stop != nil {
			select {
			case <-stop:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.Close)
	return c
}
