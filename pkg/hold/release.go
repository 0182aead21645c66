package hold

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/trace"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Changed tells the releaser that an endpoint of tenant changed, so that a
// resume is released now rather than at the next look. It never blocks;
// give it to the endpoint cache's change hook.
func (s *Store) Changed(string) {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run releases held jobs until ctx ends: it looks at every endpoint with
// held jobs every interval, when Changed is called, and again at once
// while an endpoint has more than one batch left.
func (s *Store) Run(ctx context.Context) error {
	if s.eps == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.every)
	defer t.Stop()
	for ctx.Err() == nil {
		if s.pass(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-s.kick:
		}
	}
	return nil
}

// pass looks once at every endpoint with held jobs, moving up to a batch of
// each, and reports whether any has more left.
func (s *Store) pass(ctx context.Context) (more bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := s.heldStream(ctx)
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = st.Info(ctx, jetstream.WithSubjectFilter(bus.HeldPrefix+">"))
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug().Err(err).Msg("held jobs not looked at; next pass retries")
		}
		return false
	}
	stamp := strconv.FormatInt(info.Created.UnixNano(), 10)
	for subject, n := range info.State.Subjects {
		tenant, endpoint, ok := parseSubject(subject)
		if !ok || n == 0 {
			continue
		}
		m, err := s.releaseEndpoint(ctx, st, stamp, subject, tenant, endpoint)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			s.log.Warn().Err(err).Str("tenant_id", tenant).Str("endpoint_id", endpoint).Msg("held jobs not moved; next pass retries")
			continue
		}
		more = more || m
	}
	return more
}

// mover moves held jobs (in order) to where they go next, and returns how
// many of them, from the first, are stored there: only those leave HELD.
type mover func(ctx context.Context, held []*jetstream.RawStreamMsg) (int, error)

// releaseEndpoint moves up to a batch of one endpoint's held jobs according
// to its state now, and reports whether more are left.
func (s *Store) releaseEndpoint(ctx context.Context, st jetstream.Stream, stamp, subject, tenant, endpoint string) (bool, error) {
	ep, err := s.eps.Endpoint(ctx, tenant, endpoint)
	var move mover
	var result string
	switch {
	case errors.Is(err, store.ErrNotFound):
		move, result = s.dropper(stamp), "dropped"
	case err != nil:
		return false, fmt.Errorf("endpoint: %w", err)
	case ep.Status() == store.StatusPaused:
		return false, nil
	case ep.Status() == store.StatusDisabled:
		move, result = s.skipper(tenant, endpoint, ep.SkipReason(), stamp), "skipped"
	default:
		move, result = s.releaser(tenant, endpoint, stamp), "released"
	}
	var held []*jetstream.RawStreamMsg
	for seq := uint64(1); len(held) < s.batch; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			if len(held) == 0 {
				return false, fmt.Errorf("read held jobs: %w", err)
			}
			break
		}
		held = append(held, m)
		seq = m.Sequence + 1
	}
	if len(held) == 0 {
		return false, nil
	}
	moved, err := move(ctx, held)
	if moved > 0 {
		// Everything of the endpoint up to the last job moved: all of it
		// was read above, in order, so nothing unmoved goes with it.
		if perr := st.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(held[moved-1].Sequence+1)); perr != nil {
			return false, fmt.Errorf("remove moved jobs from %s: %w", bus.StreamHeld, perr)
		}
		jobs.WithLabelValues(result).Add(float64(moved))
		s.log.Info().Str("tenant_id", tenant).Str("endpoint_id", endpoint).Int("jobs", moved).Msg("held jobs " + result)
	}
	if err != nil {
		return false, err
	}
	return len(held) == s.batch, nil
}

// releaser publishes held jobs back to DELIVERIES, in order. The message id
// is the job's HELD sequence (with HELD's creation time, since a recreated
// stream counts from 1 again), so two releasers publish each job once.
func (s *Store) releaser(tenant, endpoint, stamp string) mover {
	return func(ctx context.Context, held []*jetstream.RawStreamMsg) (int, error) {
		return s.publishAll(ctx, held, func(m *jetstream.RawStreamMsg) (*nats.Msg, []jetstream.PublishOpt, error) {
			return &nats.Msg{Subject: bus.DeliverySubject(tenant, endpoint), Data: m.Data, Header: trace.Carry(m.Header)},
				[]jetstream.PublishOpt{jetstream.WithMsgID("released:" + seqID(m, stamp)), jetstream.WithExpectStream(bus.StreamDeliveries)}, nil
		})
	}
}

// skipper records held jobs of an endpoint disabled meanwhile in the DLQ,
// marked skipped, as the sender records the jobs of a disabled endpoint.
func (s *Store) skipper(tenant, endpoint, reason, stamp string) mover {
	return func(ctx context.Context, held []*jetstream.RawStreamMsg) (int, error) {
		now := time.Now().UnixMilli()
		return s.publishAll(ctx, held, func(m *jetstream.RawStreamMsg) (*nats.Msg, []jetstream.PublishOpt, error) {
			job := &heraldv1.DeliveryJob{}
			if err := proto.Unmarshal(m.Data, job); err != nil {
				return nil, nil, nil // undeliverable either way: it goes
			}
			b, err := proto.Marshal(&heraldv1.DeadLetter{Job: job, Reason: reason, DeadAtUnixMs: now, Skipped: true})
			if err != nil {
				return nil, nil, fmt.Errorf("encode dead letter: %w", err)
			}
			return &nats.Msg{Subject: bus.DLQSubject(tenant, endpoint), Data: b, Header: trace.Carry(m.Header)},
				[]jetstream.PublishOpt{jetstream.WithMsgID("held-skipped:" + seqID(m, stamp)), jetstream.WithExpectStream(bus.StreamDLQ)}, nil
		})
	}
}

// dropper lets go of the held jobs of a deleted endpoint, releasing their
// events' stored bodies (a body whose release fails is removed by the
// payload bucket's TTL).
func (s *Store) dropper(stamp string) mover {
	return func(ctx context.Context, held []*jetstream.RawStreamMsg) (int, error) {
		for _, m := range held {
			job := &heraldv1.DeliveryJob{}
			if s.payloads == nil || proto.Unmarshal(m.Data, job) != nil || job.GetEvent().GetPayloadRef() == nil {
				continue
			}
			if err := s.payloads.Release(ctx, job.Event.PayloadRef, "held:"+seqID(m, stamp)); err != nil {
				s.log.Warn().Err(err).Str("payload", job.Event.PayloadRef.Key).Msg("event body not released; kept until the events retention")
			}
		}
		return len(held), nil
	}
}

// publishAll publishes one message per held job without waiting between
// them, then waits for the acks in order, and returns how many from the
// first were stored. build returns a nil message for a job that needs none.
func (s *Store) publishAll(ctx context.Context, held []*jetstream.RawStreamMsg, build func(*jetstream.RawStreamMsg) (*nats.Msg, []jetstream.PublishOpt, error)) (int, error) {
	futures := make([]jetstream.PubAckFuture, len(held))
	var buildErr error
	n := 0
	for ; n < len(held); n++ {
		msg, opts, err := build(held[n])
		if err != nil {
			buildErr = err
			break
		}
		if msg == nil {
			continue
		}
		if futures[n], err = s.js.PublishMsgAsync(msg, opts...); err != nil {
			buildErr = fmt.Errorf("publish: %w", err)
			break
		}
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for i, f := range futures[:n] {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return i, fmt.Errorf("store moved job: %w", err)
		case <-timeout.C:
			return i, errors.New("store moved job: timed out waiting for JetStream")
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return n, buildErr
}

// seqID names a held job by its place in HELD.
func seqID(m *jetstream.RawStreamMsg, stamp string) string {
	return strconv.FormatUint(m.Sequence, 10) + "@" + stamp
}
