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

// advance records that the dead letter at seq, the one the replay was at,
// is handled.
func (rec *record) advance(seq uint64) {
	if rec.Filter == nil {
		rec.Cursor++
		return
	}
	rec.Cursor = seq + 1
}

// from is where the filter's remaining dead letters start.
func (rec record) from() position {
	if rec.Cursor > 0 {
		return position{seq: rec.Cursor}
	}
	return position{time: rec.Filter.Since}
}

// remaining is how many of the counted dead letters no result counts yet.
func (rec record) remaining() int {
	return max(rec.Total-rec.Replayed-rec.Failed-rec.Skipped, 0)
}

// leased reports whether a process holds the replay's lease at now.
func (rec record) leased(now time.Time) bool {
	return rec.Owner != "" && now.Before(rec.LeaseUntil)
}

// release gives up the lease: any process may claim the replay at once.
func (rec *record) release() { rec.Owner, rec.LeaseUntil = "", time.Time{} }

// replayKey is where a tenant's replay is stored: tenants' replays are
// listed by the prefix "<tenant>.".
func replayKey(tenant, id string) string { return tenant + "." + id }

// encode is the stored form of rec.
func (rec record) encode() ([]byte, error) { return json.Marshal(rec) }

// decodeRecord reads a stored replay.
func decodeRecord(b []byte) (record, error) {
	var rec record
	err := json.Unmarshal(b, &rec)
	return rec, err
}

// readRecord returns a tenant's stored replay, or ErrNotFound.
func (s *Service) readRecord(ctx context.Context, tenant, id string) (record, error) {
	if !event.IsToken(tenant) || !event.IsToken(id) {
		return record{}, notFound("replay %s", id)
	}
	e, err := s.kv.Get(ctx, replayKey(tenant, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return record{}, notFound("replay %s", id)
	}
	if err != nil {
		return record{}, fmt.Errorf("read replay %s: %w", id, err)
	}
	rec, err := decodeRecord(e.Value())
	if err != nil {
		return record{}, fmt.Errorf("decode replay %s: %w", id, err)
	}
	return rec, nil
}
