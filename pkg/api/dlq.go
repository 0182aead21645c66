package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/valid"
)

// DeadLetters is the dead-letter service (pkg/dlq) as the API uses it.
type DeadLetters interface {
	List(ctx context.Context, tenant string, q dlq.Query) (dlq.Page, error)
	Get(ctx context.Context, tenant string, id uint64) (dlq.Entry, error)
	StartReplay(ctx context.Context, tenant string, req dlq.ReplayRequest) (dlq.Replay, error)
	Replay(ctx context.Context, tenant, id string) (dlq.Replay, error)
	Replays(ctx context.Context, tenant string, limit int) ([]dlq.Replay, error)
	Recover(ctx context.Context, tenant, endpointID string, since, until time.Time, rate int) (dlq.Replay, error)
	Resend(ctx context.Context, tenant, eventID, endpointID string) (dlq.Resent, error)
}

// WithDLQ serves the dead-letter routes: listing, replay, recover, resend.
// Without it those routes answer 404.
func WithDLQ(d DeadLetters) Option { return func(s *Server) { s.dlq = d } }

func (s *Server) dlqRoutes() {
	if s.dlq == nil {
		return
	}
	handle := func(pattern string, h http.HandlerFunc) { s.handle(pattern, s.tenant(h)) }
	handle("GET /v1/dlq", s.listDLQ)
	handle("GET /v1/dlq/{id}", s.getDLQ)
	handle("POST /v1/dlq/replay", s.replayDLQ)
	handle("GET /v1/dlq/replays", s.listReplays)
	handle("GET /v1/dlq/replays/{id}", s.getReplay)
	handle("POST /v1/endpoints/{id}/recover", s.recoverEndpoint)
	handle("POST /v1/events/{id}/resend", s.resendEvent)
}

// dlqError answers for a dead-letter service failure.
func (s *Server) dlqError(w http.ResponseWriter, r *http.Request, err error) {
	var nf *dlq.NotFoundError
	switch {
	case errors.As(err, &nf):
		notFound(w, r, nf.What)
	case errors.Is(err, dlq.ErrNotFound):
		notFound(w, r, "resource")
	case errors.Is(err, dlq.ErrEndpointDisabled):
		writeProblem(w, r, Problem{Type: problemBase + "endpoint-disabled", Title: "Endpoint disabled", Status: http.StatusConflict, Detail: err.Error()})
	case errors.Is(err, dlq.ErrBodyGone):
		writeProblem(w, r, Problem{Type: problemBase + "body-gone", Title: "Event body no longer stored", Status: http.StatusGone, Detail: err.Error()})
	case errors.Is(err, dlq.ErrNoEndpoints):
		writeProblem(w, r, Problem{Type: problemBase + "no-endpoints", Title: "No endpoint to send to", Status: http.StatusUnprocessableEntity, Detail: err.Error()})
	case invalid(w, r, err):
	case errors.Is(err, context.Canceled):
		// the client went away
	default:
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("dead-letter service failure")
		unavailable(w, r, "JetStream is unavailable; retry")
	}
}

// listDLQ: GET /v1/dlq?endpoint_id=&event_type=&since=&until=&limit=&cursor=
// lists the tenant's dead letters oldest first.
func (s *Server) listDLQ(w http.ResponseWriter, r *http.Request) {
	q, err := dlq.ParseQuery(r.URL.Query())
	if invalid(w, r, err) {
		return
	}
	visible, ok := s.visibleEndpoints(w, r)
	if !ok {
		return
	}
	if q.EndpointID != "" && visible != nil && !visible[q.EndpointID] {
		notFound(w, r, "endpoint")
		return
	}
	page, err := s.dlq.List(r.Context(), tenantOf(r), q)
	if err != nil {
		s.dlqError(w, r, err)
		return
	}
	if visible != nil {
		// A session's page holds its own dead letters only, so it may be
		// short; next_cursor still says whether more follow.
		sc := scopeOf(r)
		page.Data = slices.DeleteFunc(page.Data, func(e dlq.Entry) bool { return !visible[e.EndpointID] || !sc.typeVisible(e.Event.Type) })
	}
	for i := range page.Data {
		s.withAttempts(r.Context(), tenantOf(r), &page.Data[i])
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) getDLQ(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		notFound(w, r, "dead letter "+r.PathValue("id"))
		return
	}
	e, ok := s.deadLetter(w, r, id)
	if !ok {
		return
	}
	s.withAttempts(r.Context(), tenantOf(r), &e)
	writeJSON(w, http.StatusOK, e)
}

// deadLetter reads dead letter id, answering 404 for one a portal session
// may not see.
func (s *Server) deadLetter(w http.ResponseWriter, r *http.Request, id uint64) (dlq.Entry, bool) {
	e, err := s.dlq.Get(r.Context(), tenantOf(r), id)
	if err != nil {
		s.dlqError(w, r, err)
		return e, false
	}
	if sc := scopeOf(r); sc != nil {
		ok, err := s.endpointIDVisible(r.Context(), sc, tenantOf(r), e.EndpointID)
		if err != nil {
			s.storeError(w, r, err, "endpoint")
			return e, false
		}
		if !ok || !sc.typeVisible(e.Event.Type) {
			notFound(w, r, fmt.Sprintf("dead letter %d", id))
			return e, false
		}
	}
	return e, true
}

// replayInScope checks a replay a portal session asks for: dead letters by
// id that it may see, or a filter naming one of its endpoints (when it is
// limited to some) and an event type within its types (when it is limited
// to some). It answers and returns false otherwise.
func (s *Server) replayInScope(w http.ResponseWriter, r *http.Request, req dlq.ReplayRequest) bool {
	sc := scopeOf(r)
	if sc == nil {
		return true
	}
	for _, id := range req.IDs {
		if _, ok := s.deadLetter(w, r, id); !ok {
			return false
		}
	}
	if req.Filter == nil {
		return true
	}
	var errs valid.Errors
	if f := req.Filter; f.EndpointID == "" && len(sc.claims.Endpoints) > 0 {
		errs.Add("endpoint_id", "is required: this portal session sees only some endpoints")
	} else if f.EndpointID != "" {
		ok, err := s.endpointIDVisible(r.Context(), sc, tenantOf(r), f.EndpointID)
		if err != nil {
			s.storeError(w, r, err, "endpoint")
			return false
		}
		if !ok {
			notFound(w, r, "endpoint")
			return false
		}
	}
	if len(sc.claims.EventTypes) > 0 && (req.Filter.EventType == "" || !sc.filterCovered(req.Filter.EventType)) {
		errs.Add("event_type", "is required, within %s: this portal session sees only those event types", strings.Join(sc.claims.EventTypes, ", "))
	}
	return !invalid(w, r, errs.Err())
}

// replayDLQ: POST /v1/dlq/replay starts a background replay and answers 202
// with it; GET /v1/dlq/replays/{id} follows its progress.
func (s *Server) replayDLQ(w http.ResponseWriter, r *http.Request) {
	var in struct {
		dlq.ReplayInput
		Rate *int `json:"rate"` // shadows ReplayInput's, which cannot tell 0 from absent
	}
	if !decode(w, r, &in) {
		return
	}
	if in.Rate != nil {
		in.ReplayInput.Rate = *in.Rate
	}
	req, err := in.Request()
	if invalid(w, r, withRate(err, in.Rate)) || !s.replayInScope(w, r, req) {
		return
	}
	s.accepted(w, r, func(ctx context.Context) (dlq.Replay, error) { return s.dlq.StartReplay(ctx, tenantOf(r), req) })
}

func (s *Server) accepted(w http.ResponseWriter, r *http.Request, start func(context.Context) (dlq.Replay, error)) {
	rp, err := start(r.Context())
	if err != nil {
		s.dlqError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/dlq/replays/"+rp.ID)
	writeJSON(w, http.StatusAccepted, rp)
}

func (s *Server) listReplays(w http.ResponseWriter, r *http.Request) {
	rs, err := s.dlq.Replays(r.Context(), tenantOf(r), 100)
	if err != nil {
		s.dlqError(w, r, err)
		return
	}
	if sc := scopeOf(r); sc != nil {
		// A session lists the replays of a filter it could have asked
		// for: one of its endpoints, its types. Others, and replays by
		// id, are not listed (a replay it started by id it follows by
		// the id it was answered).
		visible, ok := s.visibleEndpoints(w, r)
		if !ok {
			return
		}
		rs = slices.DeleteFunc(rs, func(rp dlq.Replay) bool {
			return rp.Filter == nil || !visible[rp.Filter.EndpointID] || (len(sc.claims.EventTypes) > 0 && !sc.filterCovered(rp.Filter.EventType))
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": rs})
}

func (s *Server) getReplay(w http.ResponseWriter, r *http.Request) {
	rp, err := s.dlq.Replay(r.Context(), tenantOf(r), r.PathValue("id"))
	if err != nil {
		s.dlqError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rp)
}

// recoverEndpoint: POST /v1/endpoints/{id}/recover?since=... (or a body
// {"since", "until", "rate"}) replays what died for the endpoint since then.
func (s *Server) recoverEndpoint(w http.ResponseWriter, r *http.Request) {
	var in struct {
		dlq.RecoverInput
		Rate *int `json:"rate"` // as in replayDLQ
	}
	if !decodeOptional(w, r, &in) {
		return
	}
	qv := r.URL.Query()
	if in.Since == "" {
		in.Since = qv.Get("since")
	}
	if in.Until == "" {
		in.Until = qv.Get("until")
	}
	if in.Rate == nil && qv.Has("rate") {
		n, err := strconv.Atoi(qv.Get("rate"))
		if err != nil {
			n = -1 // reported by Parse
		}
		in.Rate = &n
	}
	if in.Rate != nil {
		in.RecoverInput.Rate = *in.Rate
	}
	since, until, rate, err := in.Parse()
	if invalid(w, r, withRate(err, in.Rate)) {
		return
	}
	s.accepted(w, r, func(ctx context.Context) (dlq.Replay, error) {
		return s.dlq.Recover(ctx, tenantOf(r), r.PathValue("id"), since, until, rate)
	})
}

// withRate adds to err, the field errors of a replay or recover request,
// an explicit rate of 0. dlq's inputs take 0 for "the default" (clients
// such as the CLI leave the field out then); sent as a value, 0 jobs per
// second is a mistake, not a request for the default, and is refused
// rather than silently replaced.
func withRate(err error, rate *int) error {
	if rate == nil || *rate != 0 {
		return err
	}
	var errs valid.Errors
	if err != nil && !errors.As(err, &errs) {
		return err
	}
	errs = append(slices.Clone(errs), valid.FieldError{Field: "rate",
		Message: fmt.Sprintf("must be from 1 to %d jobs per second; leave it out for the default", dlq.MaxRate)})
	return errs
}

// resendEvent: POST /v1/events/{id}/resend with {"endpoint_id"} or no body.
func (s *Server) resendEvent(w http.ResponseWriter, r *http.Request) {
	var in dlq.ResendInput
	if !decodeOptional(w, r, &in) {
		return
	}
	res, err := s.dlq.Resend(r.Context(), tenantOf(r), r.PathValue("id"), in.EndpointID)
	if err != nil {
		s.dlqError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

// withAttempts fills in every attempt of a dead letter's job from the
// history. The DLQ record itself carries the last attempt (the sender knows
// only that one when it dead-letters); the history has them all. The same
// job may have run more than once (routed again after a fault, each run
// from attempt 1), so the list is the one chain that ends in the record's
// own last attempt: attempt n-1 is the latest one at or before attempt n.
// A skipped job's record carries no attempt; its chain ends in the last
// attempt it made before it died. Without a history, or if it does not know
// the event, the record's own is shown.
func (s *Server) withAttempts(ctx context.Context, tenant string, e *dlq.Entry) {
	// The chain's end: the record's last attempt, or for a job skipped
	// after attempts (its endpoint was disabled while it waited for a
	// retry), the last attempt it had made before it died.
	var want int
	var until time.Time
	switch {
	case len(e.Attempts) > 0:
		last := e.Attempts[len(e.Attempts)-1]
		want, until = int(last.Number), last.At
	case e.AttemptsMade > 0:
		want, until = e.AttemptsMade, e.DeadAt
	}
	if s.history == nil || want == 0 {
		return
	}
	ev, err := s.history.Event(ctx, tenant, e.Event.ID)
	if err != nil {
		return
	}
	chain := make([]dlq.AttemptView, want)
	for i := len(ev.Attempts) - 1; i >= 0 && want > 0; i-- { // newest first
		a := ev.Attempts[i]
		if a.EndpointID != e.EndpointID || a.ReplayID != e.ReplayID || a.Test || a.Number != want || a.At.After(until) {
			continue
		}
		chain[want-1] = dlq.AttemptView{
			Number: uint32(a.Number), At: a.At, StatusCode: int32(a.ResponseStatus), LatencyMS: a.LatencyMS,
			ErrorClass: a.ErrorClass, Error: a.Error, ResponseBody: a.ResponseBody,
		}
		want, until = want-1, a.At
	}
	if want == 0 && len(chain) > len(e.Attempts) {
		e.Attempts = chain
	}
}
