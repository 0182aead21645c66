// This file is what a replay is to its callers (the HTTP API and the CLI):
// its public form, and starting, recovering and reading replays. How a
// replay is stored (record.go), which process runs it (lease.go), how it
// runs (runner.go) and how fast (pace.go) live beside it.

package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
)

// States of a replay.
const (
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// Sources of a replay.
const (
	SourceReplay  = "replay"  // POST /v1/dlq/replay
	SourceRecover = "recover" // POST /v1/endpoints/{id}/recover
)

// maxItemErrors bounds the per-item errors a replay record keeps.
const maxItemErrors = 20

// Replay is a replay job and its progress, as the API shows it. When done,
// total = replayed + failed + skipped.
type Replay struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Source string `json:"source"`
	// IDs are the dead letters asked for by id; Filter the selection
	// otherwise.
	IDs    []uint64 `json:"ids,omitempty"`
	Filter *Filter  `json:"filter,omitempty"`
	// Rate is the most jobs per second this replay publishes.
	Rate int `json:"rate"`
	// Total is how many dead letters the replay covers (for a filter, those
	// stored when it started; counted as its first step).
	Total    int `json:"total"`
	Replayed int `json:"replayed"`
	// Failed dead letters stay in the DLQ; Errors says why (the first 20).
	Failed int `json:"failed"`
	// Skipped dead letters were gone before their turn: replayed by another
	// replay, or expired.
	Skipped    int         `json:"skipped"`
	Errors     []ItemError `json:"errors,omitempty"`
	Error      string      `json:"error,omitempty"`
	CreatedAt  time.Time   `json:"created_at"`
	StartedAt  time.Time   `json:"started_at,omitzero"`
	FinishedAt time.Time   `json:"finished_at,omitzero"`
	UpdatedAt  time.Time   `json:"updated_at"`
}

// ItemError is why one dead letter was not replayed.
type ItemError struct {
	ID    uint64 `json:"id"`
	Error string `json:"error"`
}

// ReplayRequest selects what to replay: IDs, or everything matching Filter.
type ReplayRequest struct {
	IDs    []uint64
	Filter *Filter
	// Rate is jobs per second; 0 takes the service default.
	Rate   int
	source string
}

// StartReplay stores a replay and has it run in the background. Ids of
// dead letters that are not the tenant's answer ErrNotFound; so does a
// filter naming an endpoint the tenant does not have.
func (s *Service) StartReplay(ctx context.Context, tenant string, req ReplayRequest) (Replay, error) {
	if !event.IsToken(tenant) {
		return Replay{}, notFound("tenant")
	}
	if err := req.validate(); err != nil {
		return Replay{}, err
	}
	if req.Rate == 0 {
		req.Rate = s.rate
	}
	if req.source == "" {
		req.source = SourceReplay
	}
	now := s.now().UTC()
	rec := record{Tenant: tenant, Replay: Replay{
		ID: event.NewID("rpl"), State: StateRunning, Source: req.source, Rate: req.Rate,
		CreatedAt: now, UpdatedAt: now,
	}}
	var err error
	if req.Filter == nil {
		err = s.selectIDs(ctx, &rec, req.IDs)
	} else {
		err = s.selectFilter(ctx, &rec, *req.Filter)
	}
	if err != nil {
		return Replay{}, err
	}
	if err := s.create(ctx, rec); err != nil {
		return Replay{}, err
	}
	s.log.Info().Str("replay_id", rec.ID).Str("tenant_id", tenant).Str("source", rec.Source).Int("ids", len(rec.IDs)).
		Interface("filter", rec.Filter).Int("rate", rec.Rate).Msg("replay started")
	return rec.Replay, nil
}

// selectIDs makes rec a replay of the dead letters ids (each once, in the
// order asked), all of which must be the tenant's and still stored.
func (s *Service) selectIDs(ctx context.Context, rec *record, ids []uint64) error {
	ids = dedupe(ids)
	var missing []string
	for _, id := range ids {
		if _, _, err := s.load(ctx, rec.Tenant, id); errors.Is(err, ErrNotFound) {
			missing = append(missing, fmt.Sprint(id))
		} else if err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return notFound("dead letter %s", strings.Join(missing, ", "))
	}
	rec.IDs, rec.Total, rec.Counted = ids, len(ids), true
	return nil
}

// selectFilter makes rec a replay of what f selects among the dead letters
// stored now; its endpoint, if named, must be the tenant's. The runner
// counts them as its first step.
func (s *Service) selectFilter(ctx context.Context, rec *record, f Filter) error {
	if f.EndpointID != "" {
		if _, err := s.endpoint(ctx, rec.Tenant, f.EndpointID); err != nil {
			return err
		}
	}
	st, err := s.js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		return fmt.Errorf("dlq stream: %w", err)
	}
	rec.Filter, rec.UpTo = &f, st.CachedInfo().State.LastSeq
	if rec.UpTo == 0 { // nothing was ever dead-lettered
		rec.Counted = true
	}
	return nil
}

// create stores a new replay and hands it to this process's Run, which
// claims it at once (any other process may too).
func (s *Service) create(ctx context.Context, rec record) error {
	b, err := rec.encode()
	if err != nil {
		return err
	}
	key := replayKey(rec.Tenant, rec.ID)
	if _, err := s.kv.Create(ctx, key, b); err != nil {
		return fmt.Errorf("store replay: %w", err)
	}
	select {
	case s.kick <- key:
	default:
	}
	return nil
}

// Recover replays every dead letter of an endpoint that died since a time
// (and until one, if not zero): Svix's "recover". The endpoint must exist
// and be enabled.
func (s *Service) Recover(ctx context.Context, tenant, endpointID string, since, until time.Time, rate int) (Replay, error) {
	if !event.IsToken(tenant) || !event.IsToken(endpointID) {
		return Replay{}, notFound("endpoint %s", endpointID)
	}
	ep, err := s.endpoint(ctx, tenant, endpointID)
	if err != nil {
		return Replay{}, err
	}
	if !ep.Enabled {
		return Replay{}, fmt.Errorf("%w: enable endpoint %s (PATCH {\"enabled\": true}) before recovering", ErrEndpointDisabled, endpointID)
	}
	return s.StartReplay(ctx, tenant, ReplayRequest{
		Filter: &Filter{EndpointID: endpointID, Since: since, Until: until}, Rate: rate, source: SourceRecover,
	})
}

// Replay returns one replay of a tenant.
func (s *Service) Replay(ctx context.Context, tenant, id string) (Replay, error) {
	rec, err := s.readRecord(ctx, tenant, id)
	if err != nil {
		return Replay{}, err
	}
	return rec.Replay, nil
}

// Replays returns a tenant's most recent replays, newest first.
func (s *Service) Replays(ctx context.Context, tenant string, limit int) ([]Replay, error) {
	out := []Replay{}
	if !event.IsToken(tenant) {
		return out, nil
	}
	lister, err := s.kv.ListKeysFiltered(ctx, replayKey(tenant, "*"))
	if err != nil {
		return nil, fmt.Errorf("list replays: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	_ = lister.Stop()
	slices.Sort(keys) // ULIDs: creation order
	slices.Reverse(keys)
	if limit <= 0 {
		limit = DefaultLimit
	}
	for _, k := range keys[:min(limit, len(keys))] {
		rec, err := s.readRecord(ctx, tenant, strings.TrimPrefix(k, tenant+"."))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec.Replay)
	}
	return out, nil
}

// dedupe returns ids without repeats, in their first order.
func dedupe(ids []uint64) []uint64 {
	seen := make(map[uint64]bool, len(ids))
	out := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
