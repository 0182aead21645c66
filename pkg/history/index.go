package history

import (
	"context"
	"encoding/base64"
	"time"
)

var base64URL = base64.RawURLEncoding

// Batch is what one projection step writes: records decoded from a batch
// of stream messages.
type Batch struct {
	Events      []TenantEvent
	Attempts    []TenantAttempt
	DeadLetters []TenantDeadLetter
}

// TenantEvent is an event record and its tenant.
type TenantEvent struct {
	Tenant string
	EventRecord
}

// TenantAttempt is an attempt and its tenant.
type TenantAttempt struct {
	Tenant string
	Attempt
}

// TenantDeadLetter is a dead letter and its tenant.
type TenantDeadLetter struct {
	Tenant string
	DeadLetter
}

// Len is the number of records in the batch.
func (b *Batch) Len() int { return len(b.Events) + len(b.Attempts) + len(b.DeadLetters) }

// EventEntries is everything the index holds about one event.
type EventEntries struct {
	Record      *EventRecord // nil when the event itself was not (yet) projected
	Attempts    []Attempt
	DeadLetters []DeadLetter
}

// Index stores the projection. Two implementations exist: Redis, shared by
// every process, and an in-process one for the all-in-one without Redis.
type Index interface {
	// Apply writes a batch. Records older than the retention are skipped.
	// It reports whether the marker key was present after the write: when
	// it was not, the index was lost and must be rebuilt by a replay.
	Apply(ctx context.Context, b *Batch) (marker bool, err error)
	// Marker reports whether the index is initialized.
	Marker(ctx context.Context) (bool, error)
	// Lock takes the rebuild lock for ttl; false if another holds it.
	Lock(ctx context.Context, ttl time.Duration) (bool, error)
	// SetMarker marks the index initialized and releases the rebuild lock.
	SetMarker(ctx context.Context) error
	// Attempts lists an endpoint's attempts, newest first.
	Attempts(ctx context.Context, tenant, endpoint string, q Query) (Page, error)
	// Counts returns, per endpoint named, how its attempts since then went.
	Counts(ctx context.Context, tenant string, endpoints []string, since time.Time) (map[string]Counts, error)
	// Event returns what is known of one event of a tenant.
	Event(ctx context.Context, tenant, id string) (EventEntries, error)
}
