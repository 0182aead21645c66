// Package hooktest holds what the webhook receivers of the suites that
// drive Herald from the outside (services/e2e, services/faults) share:
// the official Standard Webhooks verifier for an endpoint secret, the
// bookkeeping that fails a test for every request that did not verify, and
// holding an answer back as a slow endpoint does. It lives in one place so
// that every receiver checks signatures and reports failures the same way.
//
// What a receiver records and how it answers stays with its suite: that is
// what each suite asserts on, and it differs (the e2e Receiver keeps every
// request per event id, the e2e Hook times every request, the faults
// Receiver counts deliveries per event and endpoint under load).
package hooktest

import (
	"context"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// NewWebhook returns the official library's verifier for an endpoint
// secret (whsec_...). A secret it does not take stops the test at once,
// naming who (the receiver), since every request would fail verification
// and the test would fail later with a less telling message.
func NewWebhook(t testing.TB, who, secret string) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("%s: NewWebhook(%q): %v", who, secret, err)
	}
	return wh
}

// Rejects counts the requests a receiver refused because they did not
// verify (bad signature, no secret for the path, a malformed header or
// body). A receiver answers those 400, which Herald takes as the endpoint's
// answer and retries or dead-letters, so a test could pass without noticing
// that Herald signed wrongly: Report makes it fail instead. The zero value
// is ready to use; it is safe for concurrent use.
type Rejects struct {
	mu    sync.Mutex
	n     int
	first string
}

// Add records one refused request; why names the request and says what
// failed. Only the first reason is kept: it is what Report shows.
func (r *Rejects) Add(why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		r.first = why
	}
	r.n++
}

// Report fails t, naming who (the receiver), if any request was refused,
// with how many and the first reason. Call it once the receiver is closed
// (from t.Cleanup), so that no request arrives after it.
func (r *Rejects) Report(t testing.TB, who string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n > 0 {
		t.Errorf("%s: %d request(s) failed verification; first: %s", who, r.n, r.first)
	}
}

// Stall holds an answer back for d, as a slow endpoint does, and reports
// whether the request was still wanted at the end. It is false when the
// request's context ended first (Herald's sender timed out or went away,
// or the receiver was closed): no answer can reach the sender then, so the
// receiver must not count the request as delivered. A d of zero or less
// returns true at once, whatever the context.
func Stall(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
