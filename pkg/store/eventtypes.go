package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/match"
	"github.com/heraldhq/herald/pkg/valid"
)

// eventTypePrefix starts the KV keys of the event type catalog:
// eventtype.<tenant>.<type>, whose dots become key tokens.
const eventTypePrefix = "eventtype."

// ErrExists reports a create of something that already exists.
var ErrExists = errors.New("already exists")

// EventType is an entry of a tenant's optional event type catalog: what a
// settings page shows next to the subscription checkboxes. Endpoints may
// subscribe to types that are not in the catalog, and events of any type
// are accepted: the catalog documents, it does not gate.
type EventType struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Example     json.RawMessage `json:"example,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// Limits of the catalog.
const (
	MaxEventTypeDescription = 2000
	MaxEventTypeExample     = 32 << 10
)

// Validate checks every field and reports all failures at once.
func (et *EventType) Validate() error {
	var errs valid.Errors
	if et.Name == "" {
		errs.Add("name", "is required")
	} else if err := match.ValidateType(et.Name); err != nil {
		errs.Add("name", "%v", err)
	}
	if len(et.Description) > MaxEventTypeDescription {
		errs.Add("description", "must be at most %d characters", MaxEventTypeDescription)
	} else if msg := valid.Text(et.Description, true); msg != "" {
		errs.Add("description", "%s", msg)
	}
	if len(et.Example) > 0 {
		switch {
		case len(et.Example) > MaxEventTypeExample:
			errs.Add("example", "must be at most %d bytes", MaxEventTypeExample)
		case !json.Valid(et.Example):
			errs.Add("example", "must be a JSON value")
		case bytes.Equal(bytes.TrimSpace(et.Example), []byte("null")):
			errs.Add("example", "must not be null (leave it out instead)")
		}
	}
	return errs.Err()
}

func eventTypeKey(tenant, name string) string { return eventTypePrefix + tenant + "." + name }

// CreateEventType adds a type to a tenant's catalog; ErrExists if it is
// there already.
func (s *Store) CreateEventType(ctx context.Context, tenant string, et EventType) (EventType, error) {
	if err := et.Validate(); err != nil {
		return EventType{}, err
	}
	if _, err := s.GetTenant(ctx, tenant); err != nil {
		return EventType{}, err
	}
	now := s.now().UTC()
	et.CreatedAt, et.UpdatedAt = now, now
	if err := s.create(ctx, eventTypeKey(tenant, et.Name), et); err != nil {
		if errors.Is(err, ErrConflict) {
			return EventType{}, fmt.Errorf("event type %s: %w", et.Name, ErrExists)
		}
		return EventType{}, err
	}
	return et, nil
}

// GetEventType returns one catalog entry of a tenant, or ErrNotFound.
func (s *Store) GetEventType(ctx context.Context, tenant, name string) (EventType, error) {
	var et EventType
	if !event.IsToken(tenant) || match.ValidateType(name) != nil {
		return et, ErrNotFound
	}
	_, err := s.get(ctx, eventTypeKey(tenant, name), &et)
	return et, err
}

// ListEventTypes returns a tenant's whole catalog, ordered by name.
func (s *Store) ListEventTypes(ctx context.Context, tenant string) ([]EventType, error) {
	if !event.IsToken(tenant) {
		return nil, nil
	}
	var out []EventType
	err := s.each(ctx, eventTypePrefix+tenant+".>", func(_ string, b []byte) error {
		var et EventType
		if err := json.Unmarshal(b, &et); err != nil {
			return err
		}
		out = append(out, et)
		return nil
	})
	slices.SortFunc(out, func(a, b EventType) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// UpdateEventType applies change to a catalog entry and stores it if valid.
// The name cannot change: it is the entry's identity.
func (s *Store) UpdateEventType(ctx context.Context, tenant, name string, change func(*EventType) error) (EventType, error) {
	if !event.IsToken(tenant) || match.ValidateType(name) != nil {
		return EventType{}, ErrNotFound
	}
	var et EventType
	err := s.update(ctx, eventTypeKey(tenant, name), &et, func() error {
		if err := change(&et); err != nil {
			return err
		}
		et.Name = name
		et.UpdatedAt = s.now().UTC()
		return et.Validate()
	})
	return et, err
}

// DeleteEventType removes a catalog entry. Endpoints subscribed to the type
// keep their subscription.
func (s *Store) DeleteEventType(ctx context.Context, tenant, name string) error {
	if _, err := s.GetEventType(ctx, tenant, name); err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, eventTypeKey(tenant, name)); err != nil {
		return fmt.Errorf("delete event type: %w", err)
	}
	return nil
}

// deleteEventTypes removes a tenant's whole catalog.
func (s *Store) deleteEventTypes(ctx context.Context, tenant string) error {
	ets, err := s.ListEventTypes(ctx, tenant)
	if err != nil {
		return err
	}
	for _, et := range ets {
		if err := s.kv.Purge(ctx, eventTypeKey(tenant, et.Name)); err != nil {
			return fmt.Errorf("delete event type: %w", err)
		}
	}
	return nil
}
