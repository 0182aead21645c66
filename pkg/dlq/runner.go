// This file works one replay its process owns: it publishes each dead
// letter's job back to DELIVERIES with a fresh attempt budget, then deletes
// the dead letter, saving progress and renewing the lease after each, so a
// replay stopped anywhere continues where it was without duplicates.

package dlq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
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

// run works the replay until it is done, fails, loses its lease or ctx
// ends, and leaves the record saying which.
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
		r.pause(ctx, err)
	default:
		r.finish(ctx, StateFailed, err.Error())
	}
}

// pause releases the lease of a replay stopped by ctx or by a brief
// JetStream outage (err), so that the next process (or this one, shortly)
// continues it at once, not after the lease lapses.
func (r *runner) pause(ctx context.Context, err error) {
	if ctx.Err() == nil {
		r.log.Warn().Err(err).Msg("replay paused on a transient error; it resumes shortly")
	}
	r.rec.release()
	if err := r.save(ctx, false); err != nil {
		r.log.Warn().Err(err).Msg("replay lease not released; it lapses instead")
	} else {
		r.log.Info().Int("replayed", r.rec.Replayed).Int("total", r.rec.Total).Msg("replay paused for shutdown")
	}
}

// work handles every dead letter the replay has left, saving after each;
// an error stops it.
func (r *runner) work(ctx context.Context) error {
	if err := r.ensureCounted(ctx); err != nil {
		return err
	}
	r.counted = r.rec.remaining()
	replayRemaining.Add(float64(r.counted))
	if r.rec.Filter == nil {
		return r.workIDs(ctx)
	}
	return r.workFilter(ctx)
}

// ensureCounted sets the total of a filter replay, once: the dead letters
// it selects among those stored when it started.
func (r *runner) ensureCounted(ctx context.Context) error {
	if r.rec.Counted {
		return nil
	}
	n := 0
	err := r.matching(ctx, 256, func(uint64) bool {
		n++
		return true
	})
	if err != nil {
		return err
	}
	r.rec.Total, r.rec.Counted = n, true
	return r.save(ctx, true)
}

// workIDs replays the listed dead letters not handled yet, in order.
func (r *runner) workIDs(ctx context.Context) error {
	for r.rec.NextIndex < len(r.rec.IDs) {
		if err := r.step(ctx, r.rec.IDs[r.rec.NextIndex]); err != nil {
			return err
		}
	}
	return nil
}

// workFilter replays the dead letters the filter selects, in stream order,
// reading them a hundred at a time.
func (r *runner) workFilter(ctx context.Context) error {
	for {
		var seqs []uint64
		err := r.matching(ctx, 64, func(seq uint64) bool {
			seqs = append(seqs, seq)
			return len(seqs) < 100
		})
		if err != nil || len(seqs) == 0 {
			return err
		}
		for _, seq := range seqs {
			if err := r.step(ctx, seq); err != nil {
				return err
			}
		}
	}
}

// step replays the dead letter at seq and saves the replay past it.
func (r *runner) step(ctx context.Context, seq uint64) error {
	if err := r.one(ctx, seq); err != nil {
		return err
	}
	r.rec.advance(seq)
	return r.save(ctx, true)
}

// matching calls fn with the sequence of each dead letter the filter
// selects, in stream order from where the replay is up to the DLQ's end
// when it started, until fn returns false. It reads batch messages at a time
// and renews the lease as it goes, so reading a large DLQ never lets it
// lapse.
func (r *runner) matching(ctx context.Context, batch int, fn func(seq uint64) bool) error {
	f := *r.rec.Filter
	return scan(ctx, r.s.js, bus.StreamDLQ, f.subject(r.rec.Tenant), r.rec.from(), r.rec.UpTo, batch, func(m jetstream.Msg, meta *jetstream.MsgMetadata) (bool, error) {
		if f.pastUntil(meta.Timestamp) {
			return false, nil
		}
		more := true
		dl := &heraldv1.DeadLetter{}
		if proto.Unmarshal(m.Data(), dl) == nil && f.matches(dl) {
			more = fn(meta.Sequence.Stream)
		}
		return more, r.renew(ctx)
	})
}

// one replays the dead letter at seq: publish its job with a fresh budget,
// wait for the PubAck, then delete the dead letter. It returns an error only
// to stop the replay (shutdown, lost lease); a dead letter that cannot be
// replayed counts as failed and stays.
func (r *runner) one(ctx context.Context, seq uint64) error {
	job, err := r.job(ctx, seq)
	if job == nil || err != nil {
		return err
	}
	if err := r.pace.wait(ctx); err != nil {
		return err
	}
	if err := r.renew(ctx); err != nil {
		return err
	}
	// From here the dead letter is finished even if ctx ends: a stop never
	// leaves a stored job uncounted.
	r.publish(context.WithoutCancel(ctx), seq, job)
	return nil
}

// job returns the job of the dead letter at seq if it can be sent now.
// Otherwise it returns no job and either counts the dead letter (skipped:
// gone; failed: unreadable, or its endpoint deleted or disabled) or, when
// ctx ended, returns ctx's error to stop the replay before it.
func (r *runner) job(ctx context.Context, seq uint64) (*heraldv1.DeliveryJob, error) {
	var dl *heraldv1.DeadLetter
	err := bus.Retry(ctx, func(ctx context.Context) (err error) {
		dl, _, err = r.s.load(ctx, r.rec.Tenant, seq)
		return err
	}, bus.RetryTries(retryTries), bus.RetryBackoff(bus.Linear(200*time.Millisecond)))
	if errors.Is(err, ErrNotFound) {
		r.done("skipped", seq, nil)
		return nil, nil
	}
	if err != nil {
		return nil, r.fail(ctx, seq, err)
	}
	job := dl.Job
	ep, err := r.s.endpoint(ctx, r.rec.Tenant, job.EndpointId)
	switch {
	case errors.Is(err, ErrNotFound):
		r.done("failed", seq, fmt.Errorf("endpoint %s was deleted", job.EndpointId))
		return nil, nil
	case err != nil:
		return nil, r.fail(ctx, seq, err)
	case !ep.Enabled:
		r.done("failed", seq, fmt.Errorf("endpoint %s is disabled; enable it, then replay again", job.EndpointId))
		return nil, nil
	}
	return job, nil
}

// fail counts the dead letter at seq as failed for err, unless err came
// from ctx ending: then it returns ctx's error, leaving the dead letter for
// whoever continues the replay.
func (r *runner) fail(ctx context.Context, seq uint64, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.done("failed", seq, err)
	return nil
}

// publish stores the dead letter's job again, then deletes the dead letter,
// and counts the outcome. The Nats-Msg-Id names the dead letter, so a job
// published again after a crash between the two is deduplicated.
func (r *runner) publish(ctx context.Context, seq uint64, job *heraldv1.DeliveryJob) {
	if err := r.s.publishJob(ctx, job, r.rec.ID, fmt.Sprintf("%s:replay:%d", job.Id, seq)); err != nil {
		r.done("failed", seq, err)
		return
	}
	if r.s.afterPublish != nil {
		r.s.afterPublish(r.rec.ID, seq)
	}
	if err := r.s.deleteDead(ctx, seq); err != nil {
		r.done("failed", seq, fmt.Errorf("replayed, but the dead letter was not removed: %w", err))
		return
	}
	r.done("replayed", seq, nil)
}

// done counts one dead letter's result: replayed, skipped or failed (err
// says why).
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
		r.log.Warn().Err(err).Uint64("dead_letter_id", seq).Msg("dead letter not replayed")
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
	b, err := r.rec.encode()
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

// finish saves the replay as ended in state (msg: why it failed) and
// releases it.
func (r *runner) finish(ctx context.Context, state, msg string) {
	r.rec.State, r.rec.Error = state, msg
	r.rec.FinishedAt = r.s.now().UTC()
	r.rec.release()
	if state == StateDone {
		r.rec.Skipped += r.rec.remaining() // gone between the count and their turn
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
	return bus.Retry(ctx, func(ctx context.Context) error {
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
	}, bus.RetryAny(), bus.RetryTries(retryTries), bus.RetryBackoff(bus.Linear(200*time.Millisecond)))
}
