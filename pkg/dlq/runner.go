// This file works one replay its process owns: it publishes each dead
// letter's job back to DELIVERIES with a fresh attempt budget, then deletes
// the dead letter, saving progress and renewing the lease after each, so a
// replay stopped anywhere continues where it was without duplicates.

package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

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
	var dl *heraldv1.DeadLetter
	err := retry(ctx, bus.IsRetryable, linearBackoff, func() (err error) {
		dl, _, err = r.s.load(ctx, r.rec.Tenant, seq)
		return err
	})
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

// deleteDead removes a dead letter after its job was stored. A dead letter
// already gone (another replay took it) is fine.
func (s *Service) deleteDead(ctx context.Context, seq uint64) error {
	return retry(ctx, anyError, linearBackoff, func() error {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := s.dlqStream(dctx)
		if err != nil {
			return err
		}
		if err := st.DeleteMsg(dctx, seq); err != nil {
			if _, gerr := st.GetMsg(dctx, seq); !errors.Is(gerr, jetstream.ErrMsgNotFound) {
				return err
			}
		}
		return nil
	})
}
