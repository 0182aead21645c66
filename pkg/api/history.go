package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/heraldhq/herald/pkg/dlq"
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
	q := r.URL.Query()
	limit, cursor := listParams(w, r, &errs)
	status := statusParam(q, &errs)
	if history.CheckCursor(cursor) != nil {
		errs.Add("cursor", "is not a cursor from a previous page's next_cursor")
	}
	filters := eventTypeParam(q, &errs)
	since, until := timeParam(q, "since", &errs), timeParam(q, "until", &errs)
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		errs.Add("until", "must not be before since")
	}
	if invalid(w, r, errs.Err()) {
		return
	}
	hq := history.Query{Status: status, Limit: limit, Cursor: cursor, Since: since, Until: until}
	if sc := scopeOf(r); filters != nil || sc != nil {
		hq.Keep = func(a history.Attempt) bool {
			return (filters == nil || match.Matches(filters, a.EventType)) && sc.typeVisible(a.EventType)
		}
	}
	tenant, id := tenantOf(r), r.PathValue("id")
	if _, err := s.store.GetEndpoint(r.Context(), tenant, id); err != nil {
		s.storeError(w, r, err, "endpoint")
		return
	}
	if s.noHistory(w, r) {
		return
	}
	p, err := s.history.Attempts(r.Context(), tenant, id, hq)
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
	sc := scopeOf(r)
	if err == nil && !sc.typeVisible(ev.Type) {
		err = history.ErrNotFound
	}
	if err != nil {
		s.historyError(w, r, err, "event")
		return
	}
	eps, err := s.store.ListEndpoints(r.Context(), tenant)
	if err != nil {
		s.storeError(w, r, err, "endpoints")
		return
	}
	deliveries := history.Deliveries(ev, eps)
	if sc != nil {
		// A session sees the event's state at its own endpoints only.
		visible := map[string]bool{}
		for _, e := range eps {
			visible[e.ID] = sc.endpointVisible(e)
		}
		deliveries = slices.DeleteFunc(deliveries, func(d history.Delivery) bool { return !visible[d.EndpointID] })
		if ev.EndpointID != "" && !visible[ev.EndpointID] {
			notFound(w, r, "event")
			return
		}
	}
	data, err := s.history.EventData(r.Context(), ev)
	if err != nil {
		s.historyError(w, r, err, "event")
		return
	}
	v := eventView{ID: ev.ID, Type: ev.Type, EndpointID: ev.EndpointID, Data: data, Deliveries: deliveries}
	if !ev.AcceptedAt.IsZero() {
		v.AcceptedAt = &ev.AcceptedAt
	}
	if v.Data == nil {
		v.Data = json.RawMessage("null")
	}
	writeJSON(w, http.StatusOK, v)
}

// eventTypeParam reads the event_type filter of an attempt listing or
// stream: an event type or a filter such as post.* (nil when absent).
func eventTypeParam(q url.Values, errs *valid.Errors) []string {
	f := q.Get("event_type")
	if f == "" {
		return nil
	}
	if err := match.ValidateFilter(f); err != nil {
		errs.Add("event_type", "must be an event type or a filter such as post.* or *")
	}
	return []string{f}
}

// timeParam reads an RFC 3339 time parameter (zero when absent).
func timeParam(q url.Values, name string, errs *valid.Errors) time.Time {
	v := q.Get(name)
	if v == "" {
		return time.Time{}
	}
	t, err := dlq.ParseTime(v)
	if err != nil {
		errs.Add(name, "must be an RFC 3339 time such as 2026-11-22T21:00:00Z")
	}
	return t
}

// visibleEndpoints is, for a portal session, the set of the tenant's
// endpoints it may see (nil for an API key, which sees all). It answers
// and returns false when the store cannot be read.
func (s *Server) visibleEndpoints(w http.ResponseWriter, r *http.Request) (map[string]bool, bool) {
	sc := scopeOf(r)
	if sc == nil {
		return nil, true
	}
	eps, err := s.store.ListEndpoints(r.Context(), tenantOf(r))
	if err != nil {
		s.storeError(w, r, err, "endpoints")
		return nil, false
	}
	visible := make(map[string]bool, len(eps))
	for _, e := range eps {
		if sc.endpointVisible(e) {
			visible[e.ID] = true
		}
	}
	return visible, true
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
	filters := eventTypeParam(q, &errs)
	if invalid(w, r, errs.Err()) {
		return
	}
	visible, ok := s.visibleEndpoints(w, r)
	if !ok {
		return
	}
	tenant, endpoint := tenantOf(r), q.Get("endpoint_id")
	if endpoint != "" && visible != nil && !visible[endpoint] {
		notFound(w, r, "endpoint")
		return
	}
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
			if (status == history.StatusAll || a.Status == status) && (filters == nil || match.Matches(filters, a.EventType)) &&
				(visible == nil || visible[a.EndpointID]) && scopeOf(r).typeVisible(a.EventType) {
				send("attempt", a.ID, a)
			}
			return nil
		})
	})
}
