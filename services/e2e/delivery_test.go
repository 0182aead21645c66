package e2e

// The delivery engine's rules (docs/delivery.md) end to end, against
// Herald's roles as processes, a nats-server process and Redis: the
// per-endpoint concurrency cap and circuit breaker shared by two senders,
// 410 Gone, Retry-After, the failure classes and auto-disable.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
)

// TestConcurrencyCapAcrossSenders: two senders with 64 workers each never
// have more than HERALD_ENDPOINT_CONCURRENCY requests in flight to one
// slow endpoint, deliver all of its backlog, and meanwhile deliver another
// endpoint's events promptly.
func TestConcurrencyCapAcrossSenders(t *testing.T) {
	t.Parallel()
	const (
		limit   = 4
		events  = 200
		slowFor = 300 * time.Millisecond
	)
	s := StartStack(t, 2, "HERALD_ENDPOINT_CONCURRENCY="+strconv.Itoa(limit), "HERALD_SENDER_WORKERS=64")
	tn := s.Tenant(t)
	slow := NewHook(t, func(int, *HookReq) Reply { return Reply{Delay: slowFor} })
	fast := NewHook(t, nil)
	s.API.HookEndpoint(t, tn.APIKey, slow, []string{"load.*"}, nil)
	s.API.HookEndpoint(t, tn.APIKey, fast, []string{"fast.*"}, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	l := startLoad(ctx, s.API, tn.APIKey, events, 16)
	l.wait(t)
	testenv.Eventually(t, 10*time.Second, func() bool { return slow.MaxInFlight() >= limit },
		"the slow endpoint never had %d requests in flight (max %s)", limit, testenv.Lazy(func() string { return strconv.Itoa(slow.MaxInFlight()) }))

	// Isolation: while the slow endpoint's backlog waits for its cap, a
	// second endpoint's events go through at once.
	var fastIDs []string
	fastStart := time.Now()
	for i := range 20 {
		id := fmt.Sprintf("fast-%02d", i)
		fastIDs = append(fastIDs, id)
		s.API.PostEvent(t, tn.APIKey, id, "fast.ping", `{}`)
	}
	fast.WaitDelivered(t, 5*time.Second, fastIDs...)
	fastTook := time.Since(fastStart)
	left := events - len(slow.Delivered())
	if left < events/4 {
		t.Fatalf("only %d slow events were left when the fast ones arrived: the slow endpoint was not saturated, the test proves nothing", left)
	}

	slow.WaitDelivered(t, 60*time.Second, l.ids...)
	slowTook := time.Since(start)
	s.Bus.WaitQuiet(t, tn.ID, 15*time.Second)

	if m := slow.MaxInFlight(); m > limit {
		t.Errorf("slow endpoint had %d requests in flight at once; HERALD_ENDPOINT_CONCURRENCY=%d across both senders", m, limit)
	}
	for _, p := range s.Senders {
		if n := Metric(t, p, "herald_sender_attempts_total"); n == 0 {
			t.Errorf("sender %s made no attempt: the cap was not exercised across two processes", p.URL())
		}
	}
	if n := SumMetric(t, s.Senders, "herald_limit_delayed_total", `reason="concurrency"`); n == 0 {
		t.Errorf("no job was ever held back by the concurrency cap")
	}
	dups := 0
	for _, n := range slow.Delivered() {
		dups += n - 1
	}
	t.Logf("slow endpoint: %d events in %v (floor %v at the cap), max in flight %d, %d duplicate deliveries; fast endpoint: 20 events in %v with %d slow events still queued",
		events, slowTook.Round(time.Millisecond), time.Duration(events/limit)*slowFor, slow.MaxInFlight(), dups, fastTook.Round(time.Millisecond), left)
}

// TestBreakerAcrossSenders: with HERALD_BREAKER_FAILURES=3 (and next to no
// minimum failing time) and a 2 s cool-down, three failures stop all calls
// for the cool-down; then one
// probe at a time goes, across both senders; a failed probe re-opens the
// breaker for twice the cool-down; a successful one closes it and every
// waiting event is delivered without having used attempts.
func TestBreakerAcrossSenders(t *testing.T) {
	t.Parallel()
	const coolDown = 2 * time.Second
	s := StartStack(t, 2, "HERALD_BREAKER_FAILURES=3", "HERALD_BREAKER_FAILING_FOR=1ms", "HERALD_BREAKER_COOLDOWN="+coolDown.String(), "HERALD_SENDER_WORKERS=16")
	tn := s.Tenant(t)
	var recovered atomic.Bool
	// Slow answers, so that two requests let through together would be
	// seen overlapping.
	hook := NewHook(t, func(int, *HookReq) Reply {
		if recovered.Load() {
			return Reply{Delay: 100 * time.Millisecond}
		}
		return Reply{Status: http.StatusInternalServerError, Delay: 200 * time.Millisecond}
	})
	s.API.HookEndpoint(t, tn.APIKey, hook, []string{"order.*"}, map[string]any{"max_attempts": 20})

	s.API.PostEvent(t, tn.APIKey, "brk-00", "order.paid", `{}`)
	testenv.Eventually(t, 10*time.Second, func() bool {
		return len(hook.Finished()) >= 3 && SumMetric(t, s.Senders, "herald_breaker_transitions_total", `to="open"`) >= 1
	}, "no three failures and breaker opening: %s requests", testenv.Lazy(func() string { return strconv.Itoa(len(hook.Reqs())) }))
	first := hook.Reqs()
	for i, r := range first[:3] {
		if r.ID != "brk-00" || r.Attempt != i+1 || r.Status != http.StatusInternalServerError {
			t.Fatalf("request %d: %s attempt %d status %d; want brk-00 attempt %d status 500", i+1, r.ID, r.Attempt, r.Status, i+1)
		}
	}
	opened := first[2].End // the third failure, as the receiver answered it
	if len(first) > 3 {
		t.Fatalf("a 4th request arrived %v after the third failure, while the breaker was open", first[3].Start.Sub(opened))
	}
	// More events, while it is open: they wait and use no attempt.
	ids := []string{"brk-00"}
	for i := 1; i < 10; i++ {
		id := fmt.Sprintf("brk-%02d", i)
		ids = append(ids, id)
		s.API.PostEvent(t, tn.APIKey, id, "order.paid", `{}`)
	}
	// The first probe fails; then the receiver recovers.
	testenv.Eventually(t, 3*coolDown, func() bool { return len(hook.Finished()) >= 4 },
		"no probe within %v of the breaker opening", 3*coolDown)
	recovered.Store(true)
	hook.WaitDelivered(t, 6*coolDown, ids...)
	s.Bus.WaitQuiet(t, tn.ID, 15*time.Second)

	all := hook.Reqs()
	ok := slices.IndexFunc(all, func(r HookReq) bool { return r.Status < 300 })
	if ok < 3 {
		t.Fatalf("first successful request is number %d; want one after the three failures", ok+1)
	}
	window := all[3 : ok+1] // every request after the third failure up to the first success
	for i, r := range window {
		t.Logf("after opening: request %d at +%v..+%v: %s attempt %d status %d", r.N,
			r.Start.Sub(opened).Round(time.Millisecond), r.End.Sub(opened).Round(time.Millisecond), r.ID, r.Attempt, r.Status)
		if i > 0 && r.Start.Before(window[i-1].End) {
			t.Errorf("requests %d and %d overlapped while the breaker was half-open: two probes at once", window[i-1].N, r.N)
		}
	}
	if d := window[0].Start.Sub(opened); d < coolDown-200*time.Millisecond {
		t.Errorf("first request after the breaker opened came %v after the third failure; want none for the %v cool-down", d, coolDown)
	}
	if len(window) != 2 {
		t.Errorf("%d requests from the opening to the first success; want 2: one failed probe, one successful probe", len(window))
	} else if d := window[1].Start.Sub(window[0].End); d < 2*coolDown-200*time.Millisecond {
		t.Errorf("second probe came %v after the first failed; want the cool-down doubled (%v)", d, 2*coolDown)
	}
	if ok+1 < len(all) && all[ok+1].Start.Before(all[ok].End) {
		t.Errorf("request %d started while the successful probe (request %d) was still in flight", all[ok+1].N, all[ok].N)
	}
	// Waiting for the breaker used no attempt: each event's attempts count
	// only its real requests.
	byID := map[string][]int{}
	for _, r := range all {
		byID[r.ID] = append(byID[r.ID], r.Attempt)
	}
	for id, got := range byID {
		for i, a := range got {
			if a != i+1 {
				t.Errorf("event %s: Herald-Attempt %v; want 1, 2, ... (waiting on the breaker must not use attempts)", id, got)
				break
			}
		}
	}
	for _, c := range []struct {
		to   string
		want float64
	}{{"open", 2}, {"half_open", 2}, {"closed", 1}} {
		if n := SumMetric(t, s.Senders, "herald_breaker_transitions_total", `to="`+c.to+`"`); n != c.want {
			t.Errorf("herald_breaker_transitions_total{to=%q} summed over senders = %v, want %v", c.to, n, c.want)
		}
	}
	if n := SumMetric(t, s.Senders, "herald_limit_delayed_total", `reason="breaker"`); n == 0 {
		t.Errorf("no job was held back by the breaker")
	}
	for i, p := range s.Senders {
		t.Logf("sender %c: %v breaker refusals, %v attempts", 'A'+i,
			Metric(t, p, "herald_limit_delayed_total", `reason="breaker"`), Metric(t, p, "herald_sender_attempts_total"))
	}
}

// TestDeliveryRules runs one stack with a retry schedule of 100ms, 1s,
// HERALD_DISABLE_AFTER=3s and no breaker in the way, and checks 410 Gone,
// Retry-After, the failure classes and auto-disable, each with its own
// tenant.
func TestDeliveryRules(t *testing.T) {
	t.Parallel()
	s := StartStack(t, 1,
		"HERALD_RETRY_SCHEDULE=100ms,1s",
		"HERALD_DISABLE_AFTER=3s",
		"HERALD_BREAKER_FAILURES=1000",
	)

	t.Run("GoneDisablesAtOnce", func(t *testing.T) {
		t.Parallel()
		tn := s.Tenant(t)
		var gone atomic.Bool
		gone.Store(true)
		hook := NewHook(t, func(int, *HookReq) Reply {
			if gone.Load() {
				return Reply{Status: http.StatusGone}
			}
			return Reply{}
		})
		opsHook := NewHook(t, nil)
		ep := s.API.HookEndpoint(t, tn.APIKey, hook, []string{"post.*"}, map[string]any{"max_attempts": 5})
		s.API.HookEndpoint(t, tn.APIKey, opsHook, []string{"endpoint.disabled"}, nil)
		since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)

		s.API.PostEvent(t, tn.APIKey, "gone-1", "post.created", `{"n":1}`)
		var got EndpointState
		testenv.Eventually(t, 10*time.Second, func() bool {
			var ok bool
			got, ok = s.API.GetEndpoint(tn.APIKey, ep.ID)
			return ok && !got.Enabled
		}, "endpoint still enabled after answering 410")
		if !strings.Contains(got.DisabledReason, "410") {
			t.Errorf("disabled_reason %q: want it to name the 410", got.DisabledReason)
		}
		s.API.WaitDLQ(t, tn.APIKey, ep.ID, 10*time.Second, "no dead letter in GET /v1/dlq for the endpoint")
		checkOpsDisabled(t, opsHook, ep.ID, "410")
		s.Bus.WaitQuiet(t, tn.ID, 10*time.Second)

		if reqs := hook.Reqs(); len(reqs) != 1 || reqs[0].Attempt != 1 {
			t.Errorf("endpoint got %d requests after its 410; want exactly 1 (no retry)", len(reqs))
		}
		dl, _ := s.API.DLQ(tn.APIKey, ep.ID)
		if len(dl) != 1 || dl[0].Event.ID != "gone-1" || !strings.Contains(dl[0].Reason, "410") {
			t.Fatalf("dead letters %+v: want one, for gone-1, naming the 410", dl)
		}
		if a := dl[0].Attempts; len(a) == 0 || a[len(a)-1].ResponseStatus != 410 || a[len(a)-1].ErrorClass != "gone" {
			t.Errorf("dead letter attempts %+v: want the last one 410, class gone", a)
		}

		// Re-enable with one PATCH, recover: the dead letter is delivered,
		// with the same webhook-id and a fresh attempt budget.
		gone.Store(false)
		var patched EndpointState
		s.API.Must(t, "PATCH", "/v1/endpoints/"+ep.ID, tn.APIKey, map[string]any{"enabled": true}, http.StatusOK, &patched)
		if !patched.Enabled || patched.DisabledReason != "" {
			t.Errorf("after PATCH enabled:true: enabled=%v disabled_reason=%q", patched.Enabled, patched.DisabledReason)
		}
		s.API.Must(t, "POST", "/v1/endpoints/"+ep.ID+"/recover", tn.APIKey, map[string]any{"since": since}, http.StatusAccepted, nil)
		hook.WaitDelivered(t, 10*time.Second, "gone-1")
		testenv.Eventually(t, 10*time.Second, func() bool {
			dl, ok := s.API.DLQ(tn.APIKey, ep.ID)
			return ok && len(dl) == 0
		}, "the recovered dead letter is still listed")
		s.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		reqs := hook.Reqs()
		if last := reqs[len(reqs)-1]; len(reqs) != 2 || last.Attempt != 1 || last.Status != 200 {
			t.Errorf("requests after recover: %d in all, last attempt %d status %d; want 2, the recovered one attempt 1 answered 200", len(reqs), last.Attempt, last.Status)
		}
	})

	t.Run("RetryAfterHonoured", func(t *testing.T) {
		t.Parallel()
		tn := s.Tenant(t)
		// A 429 asking for 1 s in seconds, then a 503 asking with an HTTP
		// date about 3 s ahead, then success. The schedule says 100 ms then
		// 1 s: each retry waits what the receiver asked, never less. The two
		// failures stay under 3 s apart: this stack disables an endpoint
		// whose failures span HERALD_DISABLE_AFTER=3s (with 2 s asked and a
		// schedule firing up to a second late, ra-1 was now and then
		// disabled before its third attempt).
		var dateAsked atomic.Int64 // unix ms of the date the 503 named
		hook := NewHook(t, func(n int, _ *HookReq) Reply {
			switch n {
			case 1:
				return Reply{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "1"}}
			case 2:
				at := time.Now().Add(3 * time.Second).Truncate(time.Second)
				dateAsked.Store(at.UnixMilli())
				return Reply{Status: http.StatusServiceUnavailable, Header: map[string]string{"Retry-After": at.UTC().Format(http.TimeFormat)}}
			}
			return Reply{}
		})
		s.API.HookEndpoint(t, tn.APIKey, hook, []string{"post.*"}, map[string]any{"max_attempts": 5})
		s.API.PostEvent(t, tn.APIKey, "ra-1", "post.created", `{}`)
		hook.WaitDelivered(t, 15*time.Second, "ra-1")
		s.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		reqs := hook.Reqs()
		if len(reqs) != 3 {
			t.Fatalf("%d requests, want 3 (429, 503, 200)", len(reqs))
		}
		for i, r := range reqs {
			if r.Attempt != i+1 {
				t.Errorf("request %d: Herald-Attempt %d", i+1, r.Attempt)
			}
		}
		// Retries wait as message schedules, which fire on whole seconds:
		// up to a second late, never early.
		if gap := reqs[1].Start.Sub(reqs[0].Start); gap < time.Second || gap >= 3*time.Second {
			t.Errorf("retry after 429 with Retry-After 1 (schedule 100ms) came after %v; want 1s..2s (tolerance to 3s)", gap)
		} else {
			t.Logf("Retry-After 1 (schedule 100ms): retry after %v", gap.Round(time.Millisecond))
		}
		asked := time.UnixMilli(dateAsked.Load())
		if early := asked.Sub(reqs[2].Start); early > 0 {
			t.Errorf("retry after 503 with Retry-After %s came %v early", asked.UTC().Format(http.TimeFormat), early)
		} else if late := reqs[2].Start.Sub(asked); late >= 2500*time.Millisecond {
			t.Errorf("retry after 503 with an HTTP date came %v after the date; want within about a second", late)
		} else {
			t.Logf("Retry-After as an HTTP date: retry %v after the date", late.Round(time.Millisecond))
		}
	})

	t.Run("RetryAfterBeyondMaxDeadLetters", func(t *testing.T) {
		t.Parallel()
		tn := s.Tenant(t)
		// Asking for two hours is more than HERALD_RETRY_AFTER_MAX (1 h by
		// default): the job is dead-lettered with that reason, not retried
		// early.
		hook := NewHook(t, func(int, *HookReq) Reply {
			return Reply{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "7200"}}
		})
		ep := s.API.HookEndpoint(t, tn.APIKey, hook, []string{"post.*"}, map[string]any{"max_attempts": 5})
		s.API.PostEvent(t, tn.APIKey, "ra-max", "post.created", `{}`)
		s.API.WaitDLQ(t, tn.APIKey, ep.ID, 10*time.Second, "no dead letter for a Retry-After beyond the maximum")
		s.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		if reqs := hook.Reqs(); len(reqs) != 1 {
			t.Errorf("%d requests, want exactly 1", len(reqs))
		}
		dl, _ := s.API.DLQ(tn.APIKey, ep.ID)
		if len(dl) != 1 || !strings.Contains(dl[0].Reason, "HERALD_RETRY_AFTER_MAX") {
			t.Errorf("dead letters %+v: want one naming HERALD_RETRY_AFTER_MAX", dl)
		}
	})

	t.Run("FailureClassesRecorded", func(t *testing.T) {
		t.Parallel()
		tn := s.Tenant(t)
		target := NewHook(t, nil) // where the redirect points: must get nothing
		type failure struct {
			name   string
			hook   *Hook
			url    string
			extra  map[string]any
			class  string
			status int
		}
		failures := []*failure{
			{name: "timeout", class: "timeout", extra: map[string]any{"timeout_ms": 1000},
				hook: NewHook(t, func(int, *HookReq) Reply { return Reply{Delay: 5 * time.Second} })},
			{name: "refused", class: "connection", url: "http://127.0.0.1:" + strconv.Itoa(testenv.ClosedPort(t)) + "/hook"},
			{name: "redirect", class: "redirect", status: http.StatusFound,
				hook: NewHook(t, func(int, *HookReq) Reply {
					return Reply{Status: http.StatusFound, Header: map[string]string{"Location": target.URL()}}
				})},
			{name: "notfound", class: "client_error", status: http.StatusNotFound,
				hook: NewHook(t, func(int, *HookReq) Reply { return Reply{Status: http.StatusNotFound} })},
			{name: "server", class: "server_error", status: http.StatusInternalServerError,
				hook: NewHook(t, func(int, *HookReq) Reply { return Reply{Status: http.StatusInternalServerError} })},
		}
		eps := map[string]EndpointState{}
		for _, f := range failures {
			extra := map[string]any{"max_attempts": 2}
			for k, v := range f.extra {
				extra[k] = v
			}
			events := []string{"fc." + f.name}
			if f.hook != nil {
				eps[f.name] = s.API.HookEndpoint(t, tn.APIKey, f.hook, events, extra)
			} else {
				eps[f.name] = s.API.CreateEndpointAt(t, tn.APIKey, f.url, events, extra)
			}
			s.API.PostEvent(t, tn.APIKey, "fc-"+f.name, "fc."+f.name, `{}`)
		}
		for _, f := range failures {
			ep := eps[f.name]
			dl := s.API.WaitDLQ(t, tn.APIKey, ep.ID, 15*time.Second, "%s: no dead letter", f.name)
			if len(dl) != 1 || dl[0].Event.ID != "fc-"+f.name || !strings.Contains(dl[0].Reason, "2 attempts") || !strings.Contains(dl[0].Reason, f.class) {
				t.Errorf("%s: dead letters %+v; want one for fc-%s whose reason names 2 attempts and %s", f.name, dl, f.name, f.class)
			} else if a := dl[0].Attempts; len(a) == 0 || a[len(a)-1].ErrorClass != f.class || a[len(a)-1].ResponseStatus != f.status || a[len(a)-1].Attempt != 2 {
				t.Errorf("%s: dead letter attempts %+v; want the last: attempt 2, class %s, status %d", f.name, a, f.class, f.status)
			}
			// The attempt history has both attempts, with the class.
			var hist []AttemptView
			testenv.Eventually(t, 10*time.Second, func() bool {
				var ok bool
				hist, ok = s.API.AttemptHistory(tn.APIKey, ep.ID)
				return ok && len(hist) >= 2
			}, "%s: attempt history has not 2 attempts: %+v", f.name, testenv.Lazy(func() string { return fmt.Sprintf("%+v", hist) }))
			slices.SortFunc(hist, func(a, b AttemptView) int { return a.Attempt - b.Attempt })
			if len(hist) != 2 {
				t.Errorf("%s: %d attempts in the history, want 2: %+v", f.name, len(hist), hist)
			}
			for i, a := range hist {
				wantState := "retrying"
				if i == len(hist)-1 {
					wantState = "dead"
				}
				if a.Attempt != i+1 || a.ErrorClass != f.class || a.ResponseStatus != f.status || a.State != wantState || a.EventID != "fc-"+f.name {
					t.Errorf("%s: history attempt %+v; want attempt %d, class %s, status %d, state %s", f.name, a, i+1, f.class, f.status, wantState)
				}
			}
		}
		s.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		for _, f := range failures {
			if f.hook == nil {
				continue
			}
			if reqs := f.hook.Reqs(); len(reqs) != 2 {
				t.Errorf("%s: %d requests, want 2 (max_attempts)", f.name, len(reqs))
			}
		}
		if n := len(target.Reqs()); n > 0 {
			t.Errorf("the redirect was followed: its target got %d requests", n)
		}
	})

	t.Run("AutoDisableAfterFailingTooLong", func(t *testing.T) {
		t.Parallel()
		const disableAfter = 3 * time.Second
		tn := s.Tenant(t)
		hook := NewHook(t, func(int, *HookReq) Reply { return Reply{Status: http.StatusServiceUnavailable} })
		opsHook := NewHook(t, nil)
		ep := s.API.HookEndpoint(t, tn.APIKey, hook, []string{"post.*"}, map[string]any{"max_attempts": 20})
		s.API.HookEndpoint(t, tn.APIKey, opsHook, []string{"endpoint.disabled"}, nil)

		s.API.PostEvent(t, tn.APIKey, "ad-1", "post.created", `{}`)
		var got EndpointState
		testenv.Eventually(t, 15*time.Second, func() bool {
			var ok bool
			got, ok = s.API.GetEndpoint(tn.APIKey, ep.ID)
			return ok && !got.Enabled
		}, "endpoint failing for over %v still enabled", disableAfter)
		const prefix = "failing without a success since "
		if !strings.HasPrefix(got.DisabledReason, prefix) {
			t.Fatalf("disabled_reason %q: want %q<time>", got.DisabledReason, prefix)
		}
		since, err := time.Parse(time.RFC3339, strings.TrimPrefix(got.DisabledReason, prefix))
		first := hook.Reqs()[0]
		if err != nil || since.Before(first.Start.Truncate(time.Second)) || since.After(first.End.Add(time.Second)) {
			t.Errorf("disabled_reason %q: want the time of the first failure, %v (%v)", got.DisabledReason, first.End.UTC(), err)
		}
		checkOpsDisabled(t, opsHook, ep.ID, prefix)
		dl := s.API.WaitDLQ(t, tn.APIKey, ep.ID, 10*time.Second, "the job of the disabled endpoint was not dead-lettered")
		if !strings.Contains(dl[0].Reason, "disabled") {
			t.Errorf("dead letter reason %q: want it to say the endpoint is disabled", dl[0].Reason)
		}
		s.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		reqs := hook.Reqs()
		last := reqs[len(reqs)-1]
		failingFor := last.End.Sub(first.End)
		t.Logf("disabled after %d attempts, failing for %v: %q", len(reqs), failingFor.Round(time.Millisecond), got.DisabledReason)
		if failingFor < disableAfter-100*time.Millisecond {
			t.Errorf("disabled after failing for %v; HERALD_DISABLE_AFTER=%v", failingFor, disableAfter)
		}
		// Disabled at the first failure past the period: no request
		// after it (the retry delay is at most 1.2 s).
		if failingFor > disableAfter+1200*time.Millisecond+time.Second {
			t.Errorf("last request came after failing for %v; want the endpoint disabled at the first failure after %v", failingFor, disableAfter)
		}
	})
}

// checkOpsDisabled waits for an endpoint.disabled operational event about
// endpoint at h, and checks its reason contains reason.
func checkOpsDisabled(t *testing.T, h *Hook, endpoint, reason string) {
	t.Helper()
	type disabled struct {
		EndpointID string `json:"endpoint_id"`
		Reason     string `json:"reason"`
	}
	var d disabled
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, r := range h.Reqs() {
			if r.Type == "endpoint.disabled" && json.Unmarshal(r.Data, &d) == nil && d.EndpointID == endpoint {
				return true
			}
		}
		return false
	}, "no endpoint.disabled operational event about %s reached the tenant's subscribed endpoint", endpoint)
	if !strings.Contains(d.Reason, reason) {
		t.Errorf("endpoint.disabled reason %q: want it to contain %q", d.Reason, reason)
	}
}
