package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/heraldhq/herald/pkg/store"
)

// eventTypeInput is the body of POST /v1/event-types (name required) and
// PATCH /v1/event-types/{name} (name refused: it is the identity).
type eventTypeInput struct {
	Name        *string         `json:"name,omitempty"`
	Description *string         `json:"description"`
	Example     json.RawMessage `json:"example"`
}

// eventTypePatch changes the fields it names; "example": null removes the
// example.
type eventTypePatch struct {
	Description *string         `json:"description"`
	Example     json.RawMessage `json:"example"`
}

func isNull(b json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(b), []byte("null")) }

type eventTypeView struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Example     json.RawMessage `json:"example"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

func viewEventType(et store.EventType) eventTypeView {
	v := eventTypeView{Name: et.Name, Description: et.Description, Example: et.Example, CreatedAt: et.CreatedAt, UpdatedAt: et.UpdatedAt}
	if len(v.Example) == 0 {
		v.Example = json.RawMessage("null")
	}
	return v
}

func (s *Server) createEventType(w http.ResponseWriter, r *http.Request) {
	var in eventTypeInput
	if !decode(w, r, &in) {
		return
	}
	var et store.EventType
	set(&et.Name, in.Name)
	set(&et.Description, in.Description)
	if !isNull(in.Example) {
		et.Example = in.Example
	}
	et, err := s.store.CreateEventType(r.Context(), tenantOf(r), et)
	if err != nil {
		s.storeError(w, r, err, "event type")
		return
	}
	w.Header().Set("Location", "/v1/event-types/"+et.Name)
	writeJSON(w, http.StatusCreated, viewEventType(et))
}

func (s *Server) listEventTypes(w http.ResponseWriter, r *http.Request) {
	limit, after, ok := listQuery(w, r)
	if !ok {
		return
	}
	p, err := s.store.EventTypesPage(r.Context(), tenantOf(r), after, limit)
	if err != nil {
		s.storeError(w, r, err, "event types")
		return
	}
	sc := scopeOf(r)
	out := make([]eventTypeView, 0, len(p.Items))
	for _, et := range p.Items {
		if sc.typeVisible(et.Name) {
			out = append(out, viewEventType(et))
		}
	}
	var next string
	if p.More {
		next = idCursor(p.Items[len(p.Items)-1].Name)
	}
	writeJSON(w, http.StatusOK, newPage(out, next))
}

func (s *Server) getEventType(w http.ResponseWriter, r *http.Request) {
	et, err := s.store.GetEventType(r.Context(), tenantOf(r), r.PathValue("name"))
	if err == nil && !scopeOf(r).typeVisible(et.Name) {
		err = store.ErrNotFound
	}
	if err != nil {
		s.storeError(w, r, err, "event type")
		return
	}
	writeJSON(w, http.StatusOK, viewEventType(et))
}

func (s *Server) patchEventType(w http.ResponseWriter, r *http.Request) {
	var in eventTypePatch
	if !decode(w, r, &in) {
		return
	}
	et, err := s.store.UpdateEventType(r.Context(), tenantOf(r), r.PathValue("name"), func(et *store.EventType) error {
		set(&et.Description, in.Description)
		switch {
		case isNull(in.Example):
			et.Example = nil
		case in.Example != nil:
			et.Example = in.Example
		}
		return nil
	})
	if err != nil {
		s.storeError(w, r, err, "event type")
		return
	}
	writeJSON(w, http.StatusOK, viewEventType(et))
}

func (s *Server) deleteEventType(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteEventType(r.Context(), tenantOf(r), r.PathValue("name")); err != nil {
		s.storeError(w, r, err, "event type")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
