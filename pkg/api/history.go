package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/heraldhq/herald/pkg/history"
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
	status := history.Status(r.URL.Query().Get("status"))
	switch status {
	case history.StatusAll, history.StatusFailed, history.StatusSucceeded:
	default:
		errs.Add("status", "must be failed or succeeded (or left out for both)")
	}
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
