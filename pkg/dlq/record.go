// This file is a replay as stored in the KV bucket (Bucket): the public
// Replay plus what a process needs to own and continue it, so that any API
// process can resume a replay another one started.

package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/nats-io/nats.go/jetstream"
)

// record is a replay as stored in the bucket, with what a process needs to
// own and continue it.
type record struct {
	Replay
	Tenant     string    `json:"tenant_id"`
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Cursor is, for a filter, the next DLQ sequence to look at; for ids,
	// the index of the next id.
	Cursor uint64 `json:"cursor,omitempty"`
	// UpTo is the DLQ's last sequence when the replay started: dead letters
	// stored later (jobs that died again meanwhile) are not part of it.
	UpTo    uint64 `json:"up_to,omitempty"`
	Counted bool   `json:"counted,omitempty"`
}

func replayKey(tenant, id string) string { return tenant + "." + id }

func (s *Service) getRecord(ctx context.Context, tenant, id string) (record, uint64, error) {
	if !event.IsToken(tenant) || !event.IsToken(id) {
		return record{}, 0, notFound("replay %s", id)
	}
	e, err := s.kv.Get(ctx, replayKey(tenant, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return record{}, 0, notFound("replay %s", id)
	}
	if err != nil {
		return record{}, 0, fmt.Errorf("read replay %s: %w", id, err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return record{}, 0, fmt.Errorf("decode replay %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}
