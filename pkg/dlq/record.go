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
	// NextIndex is, in a replay of IDs, the index of the next id to replay.
	NextIndex int `json:"next_index,omitempty"`
	// AfterSeq is, in a filter replay, the DLQ sequence of the last dead
	// letter handled: the replay continues after it (0: from Filter.Since).
	AfterSeq uint64 `json:"after_seq,omitempty"`
	// UpTo is the DLQ's last sequence when the replay started: dead letters
	// stored later (jobs that died again meanwhile) are not part of it.
	UpTo    uint64 `json:"up_to,omitempty"`
	Counted bool   `json:"counted,omitempty"`
}

// advance records that the dead letter at seq, the one the replay was at,
// is handled.
func (rec *record) advance(seq uint64) {
	if rec.Filter == nil {
		rec.NextIndex++
		return
	}
	rec.AfterSeq = seq
}

// from is where the filter's remaining dead letters start.
func (rec record) from() position {
	if rec.AfterSeq > 0 {
		return position{seq: rec.AfterSeq + 1}
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

// storedRecord is a record as stored. Before NextIndex and AfterSeq, one
// field, "cursor", held a replay's progress: for ids, the index of the next
// id; for a filter, the DLQ sequence after the last one handled. A record
// stored with it (by a release before them) is migrated as it is read; and
// it is still written, in that meaning, so that a process of that release,
// running beside this one during a rolling upgrade, continues a replay it
// takes over where it is rather than from its start. It is read only when
// NextIndex and AfterSeq are absent, which is how such a process leaves a
// record it saved (it drops the fields it does not know).
type storedRecord struct {
	record
	Cursor uint64 `json:"cursor,omitempty"`
}

// encode is the stored form of rec.
func (rec record) encode() ([]byte, error) {
	st := storedRecord{record: rec, Cursor: uint64(rec.NextIndex)}
	if rec.Filter != nil {
		st.Cursor = 0
		if rec.AfterSeq > 0 {
			st.Cursor = rec.AfterSeq + 1
		}
	}
	return json.Marshal(st)
}

// decodeRecord reads a stored replay, migrating the progress of one stored
// in the earlier shape (see storedRecord).
func decodeRecord(b []byte) (record, error) {
	var st storedRecord
	if err := json.Unmarshal(b, &st); err != nil {
		return record{}, err
	}
	rec := st.record
	if st.Cursor > 0 && rec.NextIndex == 0 && rec.AfterSeq == 0 {
		if rec.Filter == nil {
			rec.NextIndex = int(min(st.Cursor, uint64(len(rec.IDs))))
		} else {
			rec.AfterSeq = st.Cursor - 1
		}
	}
	return rec, nil
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
