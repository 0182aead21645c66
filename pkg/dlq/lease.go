// This file decides which process runs a replay: every API process watches
// the replay bucket and claims, by compare-and-set, the running replays
// whose owner lease is free or expired, so a replay outlives the process
// that started it (a crash, a restart) without ever running twice at once.

package dlq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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

// watched is a running replay as the watch last saw it.
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
	ws := &watchState{s: s, wg: wg, known: map[string]watched{}}
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
			ws.update(ctx, e)
		case key := <-s.kick:
			s.claimStored(ctx, key, wg)
		case <-tick.C:
			ws.claimAll(ctx)
		case <-gauge.C:
			s.refreshGauge(ctx)
		}
	}
}

// watchState is what one watch of the bucket knows: the running replays,
// and whether it has read every stored entry yet (synced).
type watchState struct {
	s      *Service
	wg     *sync.WaitGroup
	known  map[string]watched
	synced bool
}

// update takes in one entry of the watch. The nil entry ends the stored
// ones: from then on, every running replay is claimed as soon as it may be,
// and Ready is closed.
func (ws *watchState) update(ctx context.Context, e jetstream.KeyValueEntry) {
	if e == nil {
		ws.synced = true
		ws.claimAll(ctx)
		ws.s.markReady()
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(ws.known, e.Key())
		return
	}
	rec, err := decodeRecord(e.Value())
	if err != nil || rec.State != StateRunning {
		delete(ws.known, e.Key())
		return
	}
	ws.known[e.Key()] = watched{rec, e.Revision()}
	if ws.synced {
		ws.s.claim(ctx, e.Key(), rec, e.Revision(), ws.wg)
	}
}

// claimAll claims every known replay whose lease is free or expired.
func (ws *watchState) claimAll(ctx context.Context) {
	for k, v := range ws.known {
		ws.s.claim(ctx, k, v.rec, v.rev, ws.wg)
	}
}

// markReady closes Ready, once.
func (s *Service) markReady() {
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
}

// claimStored claims the replay stored at key, read now: one this process
// just started, so that it runs before the watch brings it.
func (s *Service) claimStored(ctx context.Context, key string, wg *sync.WaitGroup) {
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return // the watch will bring it
	}
	if rec, err := decodeRecord(e.Value()); err == nil {
		s.claim(ctx, key, rec, e.Revision(), wg)
	}
}

// claim takes a running replay whose lease is free or expired, with a
// compare-and-set on its revision so two processes never both take it, and
// runs it.
func (s *Service) claim(ctx context.Context, key string, rec record, rev uint64, wg *sync.WaitGroup) {
	now := s.now()
	if rec.State != StateRunning || s.act.has(key) || rec.leased(now) {
		return
	}
	resumed := rec.Owner != "" || !rec.StartedAt.IsZero()
	rec.Owner, rec.LeaseUntil = s.owner, now.Add(s.lease)
	if rec.StartedAt.IsZero() {
		rec.StartedAt = now.UTC()
	}
	b, err := rec.encode()
	if err != nil {
		return
	}
	rev, err = s.kv.Update(ctx, key, b, rev)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			s.log.Warn().Err(err).Str("tenant_id", rec.Tenant).Str("replay_id", rec.ID).Msg("claim replay failed")
		}
		return
	}
	if !s.act.add(key) {
		return
	}
	log := s.log.With().Str("replay_id", rec.ID).Str("tenant_id", rec.Tenant).Logger()
	if resumed {
		log.Info().Int("replayed", rec.Replayed).Int("total", rec.Total).Msg("replay resumed")
	}
	r := &runner{s: s, key: key, rec: rec, rev: rev, log: log, saved: now, pace: newPacer(rec.Rate)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer s.act.remove(key)
		r.run(ctx)
	}()
}

// activeSet is the replays this process runs now (by key), so that the
// watch does not claim again what its own runner holds.
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
