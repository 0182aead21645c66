package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/match"
	"github.com/heraldhq/herald/pkg/valid"
)

func (s *Server) historyError(w http.ResponseWriter, r *http.Request, err error, what string) {
	switch {
	case errors.Is(err, history.ErrNotFound):
		notFound(w, r, what)
	case errors.Is(err, history.ErrBadCursor):
		invalid(w, r, valid.Errors{{Field: "cursor", Message: "is not a cursor from a previous page's next_cursor"}})
	default:
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("history failure")
		unavailable(w, r, "the attempt history is unavailable; attempts are kept and will show once it is back")
	}
}

func (s *Server) noHistory(w http.ResponseWriter, r *http.Request) bool {
	if s.history == nil {
		unavailable(w, r, "this process keeps no attempt history")
		return true
	}
	return false
}

// listAttempts lists an endpoint's attempts, newest first, optionally only
// the failed or the succeeded ones.
func (s *Server) listAttempts(w http.ResponseWriter, r *http.Request) {
	var errs valid.Errors
	limit, cursor := listParams(w, r, &errs)
	status := statusParam(r.URL.Query(), &errs)
	if history.CheckCursor(cursor) != nil {
		errs.Add("cursor", "is not a cursor from a previous page's next_cursor")
	}
	if invalid(w, r, errs.Err()) {
		return
	}
	tenant, id := tenantOf(r), r.PathValue("id")
	if _, err := s.store.GetEndpoint(r.Context(), tenant, id); err != nil {
		s.storeError(w, r, err, "endpoint")
		return
	}
	if s.noHistory(w, r) {
		return
	}
	p, err := s.history.Attempts(r.Context(), tenant, id, history.Query{Status: status, Limit: limit, Cursor: cursor})
	if err != nil {
		s.historyError(w, r, err, "attempts")
		return
	}
	writeJSON(w, http.StatusOK, newPage(p.Attempts, p.NextCursor))
}

// eventView is GET /v1/events/{id}: the event and what became of it at
// each endpoint.
type eventView struct {
	ID         string             `json:"id"`
	Type       string             `json:"type"`
	EndpointID string             `json:"endpoint_id,omitempty"`
	AcceptedAt *time.Time         `json:"accepted_at"`
	Data       json.RawMessage    `json:"data"`
	Deliveries []history.Delivery `json:"deliveries"`
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request) {
	if s.noHistory(w, r) {
		return
	}
	tenant := tenantOf(r)
	ev, err := s.history.Event(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.historyError(w, r, err, "event")
		return
	}
	eps, err := s.store.ListEndpoints(r.Context(), tenant)
	if err != nil {
		s.storeError(w, r, err, "endpoints")
		return
	}
	v := eventView{ID: ev.ID, Type: ev.Type, EndpointID: ev.EndpointID, Data: ev.Data, Deliveries: history.Deliveries(ev, eps)}
	if !ev.AcceptedAt.IsZero() {
		v.AcceptedAt = &ev.AcceptedAt
	}
	if v.Data == nil {
		v.Data = json.RawMessage("null")
	}
	writeJSON(w, http.StatusOK, v)
}

// statusParam reads the status filter of an attempt listing or stream:
// failed, succeeded, or absent for both.
func statusParam(q url.Values, errs *valid.Errors) history.Status {
	status := history.Status(q.Get("status"))
	switch status {
	case history.StatusAll, history.StatusFailed, history.StatusSucceeded:
	default:
		errs.Add("status", "must be failed or succeeded (or left out for both)")
	}
	return status
}

// follower is the part of the history that streams attempts as they are
// recorded (history.Reader).
type follower interface {
	Follow(ctx context.Context, tenant, endpoint string, fn func(history.Attempt) error) error
}

// followAttempts streams the tenant's attempts as they are recorded, as
// server-sent events: one "attempt" event per attempt, its data the
// attempt as the history lists it, with a comment every
// streamHeartbeat so that an idle stream is not cut by a proxy.
// Filters: endpoint_id, event_type (a subscription filter such as post.*)
// and status. `herald tail` reads it.
func (s *Server) followAttempts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs valid.Errors
	status := statusParam(q, &errs)
	var filters []string
	if f := q.Get("event_type"); f != "" {
		if err := match.ValidateFilter(f); err != nil {
			errs.Add("event_type", "must be an event type or a filter such as post.* or *")
		}
		filters = []string{f}
	}
	if invalid(w, r, errs.Err()) {
		return
	}
	tenant, endpoint := tenantOf(r), q.Get("endpoint_id")
	if endpoint != "" {
		if _, err := s.store.GetEndpoint(r.Context(), tenant, endpoint); err != nil {
			s.storeError(w, r, err, "endpoint")
			return
		}
	}
	if s.noHistory(w, r) {
		return
	}
	f, ok := s.history.(follower)
	if !ok {
		unavailable(w, r, "this process cannot follow attempts")
		return
	}
	s.serveEvents(w, r, "the attempt stream ended; reconnect", func(ctx context.Context, send func(event, id string, v any)) error {
		return f.Follow(ctx, tenant, endpoint, func(a history.Attempt) error {
			if (status == history.StatusAll || a.Status == status) && (filters == nil || match.Matches(filters, a.EventType)) {
				send("attempt", a.ID, a)
			}
			return nil
		})
	})
}
