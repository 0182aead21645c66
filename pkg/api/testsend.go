package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/match"
	"github.com/heraldhq/herald/pkg/sender"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/valid"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// TestEventType is the type of test sends unless the request names another.
const TestEventType = "webhook.test"

// testInput is the optional body of POST /v1/endpoints/{id}/test.
type testInput struct {
	// EventType is the type sent (default webhook.test).
	EventType *string `json:"event_type"`
	// Data is the event's data; by default the catalog's example for the
	// type, or a small object naming the endpoint.
	Data json.RawMessage `json:"data"`
}

// testResult is the outcome of a test send: the attempt as the history
// records it, and ok for a 2xx.
type testResult struct {
	OK bool `json:"ok"`
	history.Attempt
}

// testEndpoint sends one event to the endpoint now and answers with what
// happened. The request is built and sent by the same code as real
// deliveries (sender.Build, deliver.Client): same envelope, signature,
// headers, method, content type and timeout, so a passing test means real
// deliveries pass. The attempt is recorded in the endpoint's history,
// marked test. A disabled endpoint is tested too: that is how one checks
// a fix before enabling it.
//
// Test sends obey limits: the tenant's test-send rate (checked first,
// before anything is read), then the endpoint's rate_limit and concurrency
// cap, shared with its deliveries (but not its breaker, which would refuse
// the test of a fixed endpoint). A refused test sends nothing and answers
// 429 with Retry-After.
func (s *Server) testEndpoint(w http.ResponseWriter, r *http.Request) {
	if s.testLimit != nil {
		if ok, wait := s.testLimit.Allow(r.Context(), tenantOf(r)); !ok {
			secs := retryAfter(w, wait)
			writeProblem(w, r, Problem{Type: problemBase + "rate-limited", Title: "Too many requests", Status: http.StatusTooManyRequests,
				Detail: fmt.Sprintf("this tenant sends more than %d test sends per second (HERALD_TENANT_TEST_SENDS_PER_SECOND); retry after %d s", s.testLimit.Rate(), secs)})
			return
		}
	}
	var in testInput
	if !decodeOptional(w, r, &in) {
		return
	}
	tenant := tenantOf(r)
	typ := TestEventType
	var errs valid.Errors
	if in.EventType != nil {
		typ = *in.EventType
		if err := match.ValidateType(typ); err != nil {
			errs.Add("event_type", "%v", err)
		}
	}
	if in.Data != nil && (len(bytes.TrimSpace(in.Data)) == 0 || bytes.Equal(bytes.TrimSpace(in.Data), []byte("null"))) {
		errs.Add("data", "must be a JSON value other than null")
	}
	if invalid(w, r, errs.Err()) {
		return
	}
	ep, err := s.store.GetEndpoint(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err, "endpoint")
		return
	}
	data := []byte(in.Data)
	if data == nil {
		et, err := s.store.GetEventType(r.Context(), tenant, typ)
		switch {
		case err == nil && len(et.Example) > 0:
			data = et.Example
		case err == nil || errors.Is(err, store.ErrNotFound):
			data, _ = json.Marshal(map[string]any{
				"message":     "This is a test webhook from Herald.",
				"endpoint_id": ep.ID,
			})
		default:
			s.storeError(w, r, err, "event type")
			return
		}
	}
	now := time.Now()
	ev := &heraldv1.Event{Id: event.NewID("evt"), TenantId: tenant, Type: typ, Data: data, AcceptedAtUnixMs: now.UnixMilli()}
	rec := &heraldv1.Attempt{
		JobId: event.NewID("test"), EventId: ev.Id, TenantId: tenant,
		EndpointId: ep.ID, Number: 1, AtUnixMs: now.UnixMilli(), EventType: typ,
	}
	req, err := sender.Build(&ep, ev, data, 1, now)
	if err != nil {
		rec.ErrorClass, rec.Error = "request", err.Error()
	} else {
		release, ok := s.admitTest(w, r, &ep, req.Timeout)
		if !ok {
			return
		}
		rec.RequestHeaders = sender.SentHeaders(req.Header, s.client.UserAgent())
		out := s.client.Do(r.Context(), req)
		release()
		rec.StatusCode = int32(out.Status)
		rec.LatencyUs = out.Latency.Microseconds()
		rec.ErrorClass = string(out.Class)
		rec.Error = out.Err
		rec.ResponseBody = out.Body
	}
	ok := rec.StatusCode >= 200 && rec.StatusCode <= 299
	rec.State = history.StateDead // nothing retries a test
	if ok {
		rec.State = history.StateDelivered
	}
	if s.history != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		if err := s.history.Record(ctx, rec); err != nil {
			s.log.Warn().Err(err).Str("tenant_id", tenant).Str("endpoint_id", ep.ID).Msg("test attempt not recorded")
		}
		cancel()
	}
	writeJSON(w, http.StatusOK, testResult{OK: ok, Attempt: history.FromProto(rec)})
}

// admitTest asks the endpoint's limiter for a slot for a test send of the
// given timeout. When refused it answers 429 and reports false; otherwise
// the caller calls release after the request.
func (s *Server) admitTest(w http.ResponseWriter, r *http.Request, ep *store.Endpoint, timeout time.Duration) (release func(), ok bool) {
	if s.endpoints == nil {
		return func() {}, true
	}
	if timeout <= 0 {
		timeout = deliver.DefaultTimeout
	}
	// The slot outlives the request by a margin, as a delivery's does.
	adm := s.endpoints.Admit(r.Context(), ep.ID, ep.RateLimit, timeout+5*time.Second)
	if adm.OK {
		return adm.Release, true
	}
	secs := retryAfter(w, adm.Wait)
	why := "the endpoint has as many requests in flight as it may (HERALD_ENDPOINT_CONCURRENCY), deliveries and tests together"
	if adm.Reason == "rate" {
		why = fmt.Sprintf("the endpoint's rate_limit of %d per second is used up, by deliveries and tests together", ep.RateLimit)
	}
	writeProblem(w, r, Problem{Type: problemBase + "endpoint-limited", Title: "Endpoint limit reached", Status: http.StatusTooManyRequests,
		Detail: fmt.Sprintf("%s; nothing was sent: retry after %d s", why, secs)})
	return nil, false
}
