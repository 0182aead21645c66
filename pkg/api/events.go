package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/heraldhq/herald/pkg/event"
)

// postEvent accepts an event and answers 202 only after JetStream stored it.
// A repeated id within the duplicate window answers 202 with the same id and
// stores nothing new.
//
// The limit (HERALD_MAX_EVENT_BYTES) applies to the event's data; the body
// may be EventEnvelopeBytes larger for the rest of the JSON. Either limit
// passed answers 413 with the data limit in "limit", and stores nothing.
// While the process holds its bound of event bytes in flight, it answers
// 503 with Retry-After before reading the body (see budget).
func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	if s.eventLimit != nil {
		if ok, wait := s.eventLimit.Allow(r.Context(), tenantOf(r)); !ok {
			s.rateLimited(w, r, wait)
			return
		}
	}
	if !jsonContent(w, r) {
		return
	}
	b, held, err := s.readEvent(r, s.maxEvent+EventEnvelopeBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, errBusy):
			s.busy(w, r)
		case errors.As(err, &mbe):
			s.eventTooLarge(w, r, fmt.Sprintf("the request body is larger than %d bytes", s.maxEvent+EventEnvelopeBytes))
		default:
			badRequest(w, r, "could not read the request body")
		}
		return
	}
	defer s.inflight.give(held) // once stored, or refused
	in, err := event.Parse(b)
	if err != nil {
		if errors.Is(err, event.ErrMalformed) {
			badRequest(w, r, err.Error())
			return
		}
		invalid(w, r, err)
		return
	}
	if int64(len(in.Data)) > s.maxEvent {
		s.eventTooLarge(w, r, fmt.Sprintf("the event's data is %d bytes", len(in.Data)))
		return
	}
	tenant := tenantOf(r)
	if in.EndpointID != "" {
		if _, err := s.store.GetEndpoint(r.Context(), tenant, in.EndpointID); err != nil {
			s.storeError(w, r, err, "endpoint "+in.EndpointID)
			return
		}
	}
	res, err := s.pub.Publish(s.tracer.Extract(r.Context(), r.Header), tenant, in)
	if err != nil {
		if invalid(w, r, err) {
			return
		}
		s.log.Error().Err(err).Str("tenant_id", tenant).Msg("event not stored")
		unavailable(w, r, "the event was not stored; retry with the same id")
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": res.ID, "duplicate": res.Duplicate})
}

// rateLimited answers 429: the tenant sends events faster than its limit.
// Retry-After is in whole seconds, at least 1.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	secs := retryAfter(w, wait)
	writeProblem(w, r, Problem{Type: problemBase + "rate-limited", Title: "Too many requests", Status: http.StatusTooManyRequests,
		Detail: fmt.Sprintf("this tenant sends more than %d events per second (HERALD_TENANT_EVENTS_PER_SECOND); retry after %d s with the same id", s.eventLimit.Rate(), secs)})
}

// busy answers 503: this process holds its bound of event bytes already.
// The body is read and discarded, never kept (a small buffer, whatever its
// size), so that the client reads a clean 503 with Retry-After: an answer
// sent while the client still writes would reach it as a broken pipe.
// Another replica, or this one a moment later, can take the event.
func (s *Server) busy(w http.ResponseWriter, r *http.Request) {
	busyRefusals.Inc()
	_, _ = io.Copy(io.Discard, r.Body) // bounded by the route's body limit
	w.Header().Set("Connection", "close")
	secs := retryAfter(w, time.Second)
	writeProblem(w, r, Problem{Type: problemBase + "busy", Title: "Intake busy", Status: http.StatusServiceUnavailable,
		Detail: fmt.Sprintf("this process is receiving %d bytes of events already (HERALD_MAX_INFLIGHT_EVENT_BYTES); nothing was stored: retry after %d s with the same id",
			s.inflight.max, secs)})
}

// eventTooLarge answers 413 for an event over the limit.
func (s *Server) eventTooLarge(w http.ResponseWriter, r *http.Request, what string) {
	writeProblem(w, r, Problem{Type: problemBase + "too-large", Title: "Event too large", Status: http.StatusRequestEntityTooLarge,
		Detail: fmt.Sprintf("%s; an event's data may be up to %d bytes (limit), plus %d bytes for the rest of its JSON",
			what, s.maxEvent, EventEnvelopeBytes),
		Limit: s.maxEvent})
}
