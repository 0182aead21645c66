package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

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
func (s *Server) testEndpoint(w http.ResponseWriter, r *http.Request) {
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
		out := s.client.Do(r.Context(), req)
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
			s.log.Warn().Err(err).Str("tenant", tenant).Str("endpoint_id", ep.ID).Msg("test attempt not recorded")
		}
		cancel()
	}
	writeJSON(w, http.StatusOK, testResult{OK: ok, Attempt: history.FromProto(rec)})
}
