package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/nats-io/nats.go/jetstream"
)

// Page is one page of a listing in id order. More is true when items
// follow the last one; the caller continues with after = the last id.
type Page[T any] struct {
	Items []T
	More  bool
}

// TenantsPage lists at most limit tenants whose id sorts after after.
func (s *Store) TenantsPage(ctx context.Context, after string, limit int) (Page[Tenant], error) {
	return page[Tenant](ctx, s, tenantPrefix+"*", tenantPrefix, after, limit)
}

// EndpointsPage lists at most limit endpoints of a tenant whose id sorts
// after after.
func (s *Store) EndpointsPage(ctx context.Context, tenant, after string, limit int) (Page[Endpoint], error) {
	if !event.IsToken(tenant) {
		return Page[Endpoint]{}, nil
	}
	return page[Endpoint](ctx, s, EndpointKey(tenant, "*"), EndpointKey(tenant, ""), after, limit)
}

// EventTypesPage lists at most limit catalog entries of a tenant whose name
// sorts after after.
func (s *Store) EventTypesPage(ctx context.Context, tenant, after string, limit int) (Page[EventType], error) {
	if !event.IsToken(tenant) {
		return Page[EventType]{}, nil
	}
	return page[EventType](ctx, s, eventTypePrefix+tenant+".>", eventTypePrefix+tenant+".", after, limit)
}

// page lists the keys matching filter (only keys: cheap), sorts the ids
// that follow prefix, and loads only the page's values.
func page[T any](ctx context.Context, s *Store, filter, prefix, after string, limit int) (Page[T], error) {
	var p Page[T]
	if limit <= 0 {
		return p, nil
	}
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return p, fmt.Errorf("list %s: %w", filter, err)
	}
	var ids []string
	for key := range lister.Keys() {
		if id, ok := strings.CutPrefix(key, prefix); ok && id > after {
			ids = append(ids, id)
		}
	}
	_ = lister.Stop()
	if err := ctx.Err(); err != nil {
		return p, fmt.Errorf("list %s: %w", filter, err)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if len(p.Items) == limit {
			p.More = true
			break
		}
		entry, err := s.kv.Get(ctx, prefix+id)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return p, fmt.Errorf("load %s: %w", prefix+id, err)
		}
		var v T
		if err := s.decode(prefix+id, entry.Value(), &v); err != nil {
			return p, fmt.Errorf("decode %s: %w", prefix+id, err)
		}
		p.Items = append(p.Items, v)
	}
	return p, nil
}
