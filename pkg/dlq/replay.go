package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
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

// ReplayRequest selects what to replay: IDs, or everything matching Filter.
type ReplayRequest struct {
	IDs    []uint64
	Filter *Filter
	// Rate is jobs per second; 0 takes the service default.
	Rate   int
	source string
}

func replayKey(tenant, id string) string { return tenant + "." + id }

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
	if req.Filter == nil {
		ids := dedupe(req.IDs)
		var missing []string
		for _, id := range ids {
			if _, _, err := s.load(ctx, tenant, id); errors.Is(err, ErrNotFound) {
				missing = append(missing, fmt.Sprint(id))
			} else if err != nil {
				return Replay{}, err
			}
		}
		if len(missing) > 0 {
			return Replay{}, notFound("dead letter %s", strings.Join(missing, ", "))
		}
		rec.IDs, rec.Total, rec.Counted = ids, len(ids), true
	} else {
		f := *req.Filter
		if f.EndpointID != "" {
			if _, err := s.eps.Endpoint(ctx, tenant, f.EndpointID); errors.Is(err, store.ErrNotFound) {
				return Replay{}, notFound("endpoint %s", f.EndpointID)
			} else if err != nil {
				return Replay{}, fmt.Errorf("endpoint %s: %w", f.EndpointID, err)
			}
		}
		st, err := s.js.Stream(ctx, bus.StreamDLQ)
		if err != nil {
			return Replay{}, fmt.Errorf("dlq stream: %w", err)
		}
		rec.Filter, rec.UpTo = &f, st.CachedInfo().State.LastSeq
		if rec.UpTo == 0 { // nothing was ever dead-lettered
			rec.Counted = true
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return Replay{}, err
	}
	key := replayKey(tenant, rec.ID)
	if _, err := s.kv.Create(ctx, key, b); err != nil {
		return Replay{}, fmt.Errorf("store replay: %w", err)
	}
	select { // this process's Run claims it at once; any other may too
	case s.kick <- key:
	default:
	}
	s.log.Info().Str("replay_id", rec.ID).Str("tenant", tenant).Str("source", rec.Source).Int("ids", len(rec.IDs)).
		Interface("filter", rec.Filter).Int("rate", rec.Rate).Msg("replay started")
	return rec.Replay, nil
}

// Recover replays every dead letter of an endpoint that died since a time
// (and until one, if not zero): Svix's "recover". The endpoint must exist
// and be enabled.
func (s *Service) Recover(ctx context.Context, tenant, endpointID string, since, until time.Time, rate int) (Replay, error) {
	if !event.IsToken(tenant) || !event.IsToken(endpointID) {
		return Replay{}, notFound("endpoint %s", endpointID)
	}
	ep, err := s.eps.Endpoint(ctx, tenant, endpointID)
	if errors.Is(err, store.ErrNotFound) {
		return Replay{}, notFound("endpoint %s", endpointID)
	}
	if err != nil {
		return Replay{}, fmt.Errorf("endpoint %s: %w", endpointID, err)
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
	rec, _, err := s.getRecord(ctx, tenant, id)
	if err != nil {
		return Replay{}, err
	}
	return rec.Replay, nil
}

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
		rec, _, err := s.getRecord(ctx, tenant, strings.TrimPrefix(k, tenant+"."))
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

// Ready is closed once Run has read every stored replay and claimed those
// it may continue.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run runs replays until ctx ends: those started here, and any other
// process's whose lease expired (a crashed process), including this
// process's own before a restart. On ctx end, replays in progress stop after
// the dead letter they hold and release their lease, so whoever starts next
// continues them at once. It also keeps herald_dlq_messages current.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		err := s.watch(ctx, &wg)
		if ctx.Err() != nil {
			break
		}
		s.log.Warn().Err(err).Msg("replay watch stopped; restarting")
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

type watched struct {
	rec record
	rev uint64
}

// watch follows the replay bucket: every running replay is known with its
// lease, and claimed when the lease is free or expired.
func (s *Service) watch(ctx context.Context, wg *sync.WaitGroup) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch replays: %w", err)
	}
	defer func() { _ = w.Stop() }()
	known := map[string]watched{}
	synced := false
	tick := time.NewTicker(max(s.lease/3, 10*time.Millisecond))
	defer tick.Stop()
	gauge := time.NewTicker(15 * time.Second)
	defer gauge.Stop()
	s.refreshGauge(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("replay watch closed")
			}
			if e == nil {
				synced = true
				for k, v := range known {
					s.claim(ctx, k, v.rec, v.rev, wg)
				}
				select {
				case <-s.ready:
				default:
					close(s.ready)
				}
				continue
			}
			var rec record
			if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &rec) != nil || rec.State != StateRunning {
				delete(known, e.Key())
				continue
			}
			known[e.Key()] = watched{rec, e.Revision()}
			if synced {
				s.claim(ctx, e.Key(), rec, e.Revision(), wg)
			}
		case key := <-s.kick:
			e, err := s.kv.Get(ctx, key)
			if err != nil {
				continue // the watch will bring it
			}
			var rec record
			if json.Unmarshal(e.Value(), &rec) == nil {
				s.claim(ctx, key, rec, e.Revision(), wg)
			}
		case <-tick.C:
			for k, v := range known {
				s.claim(ctx, k, v.rec, v.rev, wg)
			}
		case <-gauge.C:
			s.refreshGauge(ctx)
		}
	}
}

// claim takes a running replay whose lease is free or expired, with a
// compare-and-set on its revision so two processes never both take it, and
// runs it.
func (s *Service) claim(ctx context.Context, key string, rec record, rev uint64, wg *sync.WaitGroup) {
	now := s.now()
	if rec.State != StateRunning || s.act.has(key) || (rec.Owner != "" && now.Before(rec.LeaseUntil)) {
		return
	}
	resumed := rec.Owner != "" || !rec.StartedAt.IsZero()
	rec.Owner, rec.LeaseUntil = s.owner, now.Add(s.lease)
	if rec.StartedAt.IsZero() {
		rec.StartedAt = now.UTC()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	rev, err = s.kv.Update(ctx, key, b, rev)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			s.log.Warn().Err(err).Str("replay", key).Msg("claim replay failed")
		}
		return
	}
	if !s.act.add(key) {
		return
	}
	log := s.log.With().Str("replay_id", rec.ID).Str("tenant", rec.Tenant).Logger()
	if resumed {
		log.Info().Int("replayed", rec.Replayed).Int("total", rec.Total).Msg("replay resumed")
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer s.act.remove(key)
		r := &runner{s: s, key: key, rec: rec, rev: rev, log: log, saved: now}
		r.pace.every = time.Second / time.Duration(max(rec.Rate, 1))
		r.run(ctx)
	}()
}

type activeSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (a *activeSet) has(k string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.m[k]
}

func (a *activeSet) add(k string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m[k] {
		return false
	}
	if a.m == nil {
		a.m = map[string]bool{}
	}
	a.m[k] = true
	return true
}

func (a *activeSet) remove(k string) {
	a.mu.Lock()
	delete(a.m, k)
	a.mu.Unlock()
}

// errLostLease: another process owns the replay now (or its record could
// not be saved, and the lease will lapse): stop without touching it.
var errLostLease = errors.New("replay lease lost")

// runner works one replay it owns.
type runner struct {
	s     *Service
	key   string
	rec   record
	rev   uint64
	log   zerolog.Logger
	saved time.Time
	pace  pacer
	// counted is what this runner added to herald_replay_remaining_jobs.
	counted int
}

func (r *runner) run(ctx context.Context) {
	replaysRunning.Inc()
	defer replaysRunning.Dec()
	defer func() { replayRemaining.Sub(float64(r.counted)) }()
	err := r.work(ctx)
	switch {
	case err == nil:
		r.finish(ctx, StateDone, "")
	case errors.Is(err, errLostLease):
		r.log.Warn().Msg("replay taken over by another process or not saved; stopped here")
	case ctx.Err() != nil || bus.IsRetryable(err):
		// Stopping, or JetStream is briefly unavailable: release the lease
		// so that the next process (or this one, shortly) continues at
		// once, not after it lapses.
		if ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("replay paused on a transient error; it resumes shortly")
		}
		r.rec.Owner, r.rec.LeaseUntil = "", time.Time{}
		if err := r.save(ctx, false); err != nil {
			r.log.Warn().Err(err).Msg("replay lease not released; it lapses instead")
		} else {
			r.log.Info().Int("replayed", r.rec.Replayed).Int("total", r.rec.Total).Msg("replay paused for shutdown")
		}
	default:
		r.finish(ctx, StateFailed, err.Error())
	}
}

func (r *runner) work(ctx context.Context) error {
	if !r.rec.Counted {
		n, err := r.count(ctx)
		if err != nil {
			return err
		}
		r.rec.Total, r.rec.Counted = n, true
		if err := r.save(ctx, true); err != nil {
			return err
		}
	}
	r.counted = max(r.rec.Total-r.rec.Replayed-r.rec.Failed-r.rec.Skipped, 0)
	replayRemaining.Add(float64(r.counted))
	if r.rec.Filter == nil {
		for int(r.rec.Cursor) < len(r.rec.IDs) {
			seq := r.rec.IDs[r.rec.Cursor]
			if err := r.one(ctx, seq); err != nil {
				return err
			}
			r.rec.Cursor++
			if err := r.save(ctx, true); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		seqs, err := r.next(ctx, 100)
		if err != nil || len(seqs) == 0 {
			return err
		}
		for _, seq := range seqs {
			if err := r.one(ctx, seq); err != nil {
				return err
			}
			r.rec.Cursor = seq + 1
			if err := r.save(ctx, true); err != nil {
				return err
			}
		}
	}
}

// from is where the filter's remaining dead letters start.
func (r *runner) from() position {
	if r.rec.Cursor > 0 {
		return position{seq: r.rec.Cursor}
	}
	return position{time: r.rec.Filter.Since}
}

// count counts the dead letters the filter selects, renewing the lease
// while a large DLQ is read.
func (r *runner) count(ctx context.Context) (int, error) {
	f := *r.rec.Filter
	n := 0
	err := scan(ctx, r.s.js, bus.StreamDLQ, f.subject(r.rec.Tenant), r.from(), r.rec.UpTo, 256, func(m jetstream.Msg, meta *jetstream.MsgMetadata) (bool, error) {
		if f.pastUntil(meta.Timestamp) {
			return false, nil
		}
		dl := &heraldv1.DeadLetter{}
		if proto.Unmarshal(m.Data(), dl) == nil && f.matches(dl) {
			n++
		}
		return true, r.renew(ctx)
	})
	return n, err
}

// next returns up to n sequences of matching dead letters from the cursor.
func (r *runner) next(ctx context.Context, n int) ([]uint64, error) {
	f := *r.rec.Filter
	var out []uint64
	err := scan(ctx, r.s.js, bus.StreamDLQ, f.subject(r.rec.Tenant), r.from(), r.rec.UpTo, 64, func(m jetstream.Msg, meta *jetstream.MsgMetadata) (bool, error) {
		if f.pastUntil(meta.Timestamp) {
			return false, nil
		}
		dl := &heraldv1.DeadLetter{}
		if proto.Unmarshal(m.Data(), dl) == nil && f.matches(dl) {
			out = append(out, meta.Sequence.Stream)
		}
		return len(out) < n, r.renew(ctx)
	})
	return out, err
}

// one replays the dead letter at seq: publish its job with a fresh budget,
// wait for the PubAck, then delete the dead letter. It returns an error only
// to stop the replay (shutdown, lost lease); a dead letter that cannot be
// replayed counts as failed and stays.
func (r *runner) one(ctx context.Context, seq uint64) error {
	dl, _, err := r.s.load(ctx, r.rec.Tenant, seq)
	for try := 1; err != nil && try < 4 && ctx.Err() == nil && bus.IsRetryable(err); try++ {
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(try) * 200 * time.Millisecond):
		}
		dl, _, err = r.s.load(ctx, r.rec.Tenant, seq)
	}
	if errors.Is(err, ErrNotFound) {
		r.done("skipped", seq, nil)
		return nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.done("failed", seq, err)
		return nil
	}
	job := dl.Job
	ep, err := r.s.eps.Endpoint(ctx, r.rec.Tenant, job.EndpointId)
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.done("failed", seq, fmt.Errorf("endpoint %s was deleted", job.EndpointId))
		return nil
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.done("failed", seq, fmt.Errorf("endpoint %s: %w", job.EndpointId, err))
		return nil
	case !ep.Enabled:
		r.done("failed", seq, fmt.Errorf("endpoint %s is disabled; enable it, then replay again", job.EndpointId))
		return nil
	}
	if err := r.pace.wait(ctx); err != nil {
		return err
	}
	if err := r.renew(ctx); err != nil {
		return err
	}
	// From here the dead letter is finished even if ctx ends: a stop never
	// leaves a stored job uncounted.
	ctx = context.WithoutCancel(ctx)
	if err := r.s.publishJob(ctx, job, r.rec.ID, fmt.Sprintf("%s:replay:%d", job.Id, seq)); err != nil {
		r.done("failed", seq, err)
		return nil
	}
	if r.s.afterPublish != nil {
		r.s.afterPublish(r.rec.ID, seq)
	}
	if err := r.s.deleteDead(ctx, seq); err != nil {
		r.done("failed", seq, fmt.Errorf("replayed, but the dead letter was not removed: %w", err))
		return nil
	}
	r.done("replayed", seq, nil)
	return nil
}

func (r *runner) done(result string, seq uint64, err error) {
	replayJobs.WithLabelValues(result).Inc()
	if r.counted > 0 {
		r.counted--
		replayRemaining.Dec()
	}
	switch result {
	case "replayed":
		r.rec.Replayed++
	case "skipped":
		r.rec.Skipped++
	case "failed":
		r.rec.Failed++
		if len(r.rec.Errors) < maxItemErrors {
			r.rec.Errors = append(r.rec.Errors, ItemError{ID: seq, Error: err.Error()})
		}
		r.log.Warn().Err(err).Uint64("dlq_seq", seq).Msg("dead letter not replayed")
	}
}

// renew saves the record when a third of the lease has passed since the
// last save, so a slow step never lets the lease lapse.
func (r *runner) renew(ctx context.Context) error {
	if r.s.now().Sub(r.saved) < r.s.lease/3 {
		return nil
	}
	return r.save(ctx, true)
}

// save stores the record with a compare-and-set on the revision this runner
// last wrote, renewing the lease (if keep). A conflict means another process
// owns the replay.
func (r *runner) save(ctx context.Context, keep bool) error {
	now := r.s.now()
	r.rec.UpdatedAt = now.UTC()
	if keep {
		r.rec.LeaseUntil = now.Add(r.s.lease)
	}
	b, err := json.Marshal(r.rec)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	rev, err := r.s.kv.Update(sctx, r.key, b, r.rev)
	if err != nil {
		return fmt.Errorf("%w: %v", errLostLease, err)
	}
	r.rev, r.saved = rev, now
	return nil
}

func (r *runner) finish(ctx context.Context, state, msg string) {
	r.rec.State, r.rec.Error = state, msg
	r.rec.FinishedAt = r.s.now().UTC()
	r.rec.Owner, r.rec.LeaseUntil = "", time.Time{}
	if rest := r.rec.Total - r.rec.Replayed - r.rec.Failed - r.rec.Skipped; state == StateDone && rest > 0 {
		r.rec.Skipped += rest // gone between the count and their turn
	}
	if err := r.save(ctx, false); err != nil {
		r.log.Error().Err(err).Msg("replay finished but not saved; it will be run again and find nothing left")
		return
	}
	replaysFinished.WithLabelValues(state).Inc()
	r.s.refreshGauge(context.WithoutCancel(ctx))
	ev := r.log.Info()
	if state == StateFailed {
		ev = r.log.Error().Str("error", msg)
	}
	ev.Int("total", r.rec.Total).Int("replayed", r.rec.Replayed).Int("failed", r.rec.Failed).Int("skipped", r.rec.Skipped).Msg("replay " + state)
}

// publishJob stores job in DELIVERIES with a fresh attempt budget, marked
// with replayID, under msgID, and waits for the PubAck. Transient failures
// are retried with the same msgID.
func (s *Service) publishJob(ctx context.Context, job *heraldv1.DeliveryJob, replayID, msgID string) error {
	j := proto.Clone(job).(*heraldv1.DeliveryJob)
	j.PriorAttempts, j.ReplayId, j.CreatedAtUnixMs = 0, replayID, s.now().UnixMilli()
	b, err := proto.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = s.js.PublishMsg(pctx, &nats.Msg{Subject: bus.DeliverySubject(j.TenantId, j.EndpointId), Data: b},
			jetstream.WithMsgID(msgID), jetstream.WithExpectStream(bus.StreamDeliveries))
		cancel()
		if err == nil || attempt == 4 || ctx.Err() != nil || !bus.IsRetryable(err) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay *= 2
	}
	if err != nil {
		return fmt.Errorf("store job: %w", err)
	}
	return nil
}

// deleteDead removes a dead letter after its job was stored. A dead letter
// already gone (another replay took it) is fine.
func (s *Service) deleteDead(ctx context.Context, seq uint64) error {
	var err error
	for attempt := 1; attempt <= 4; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var st jetstream.Stream
		if st, err = s.dlqStream(dctx); err == nil {
			if err = st.DeleteMsg(dctx, seq); err != nil {
				if _, gerr := st.GetMsg(dctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
					err = nil
				}
			}
		}
		cancel()
		if err == nil {
			return nil
		}
		if attempt < 4 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
	}
	return err
}

// pacer spaces publishes every interval: the first at once, then no faster
// than the rate, so a replay cannot flood an endpoint that just recovered.
type pacer struct {
	every time.Duration
	next  time.Time
}

func (p *pacer) wait(ctx context.Context) error {
	now := time.Now()
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		now = p.next
	}
	p.next = now.Add(p.every)
	return nil
}

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
