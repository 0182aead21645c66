package history

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/attemptlog"
	"github.com/heraldhq/herald/pkg/bus"
)

// Follow calls fn with every attempt of tenant recorded from now on, in
// the order they were stored, until ctx ends or fn returns an error; it
// returns that error, or nil when ctx ended. endpoint "" follows every
// endpoint of the tenant. It reads ATTEMPTS directly, not the index, so an
// attempt is seen as soon as it is stored, through an ordered consumer (in
// memory, no acks) that costs the stream nothing and goes away with it.
func (r *Reader) Follow(ctx context.Context, tenant, endpoint string, fn func(Attempt) error) error {
	if endpoint == "" {
		endpoint = "*"
	}
	oc, err := r.js.OrderedConsumer(ctx, bus.StreamAttempts, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.AttemptSubject(tenant, endpoint)},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("follow attempts: %w", err)
	}
	for {
		msg, err := oc.Next(jetstream.FetchContext(ctx))
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
			continue
		case err != nil:
			return fmt.Errorf("follow attempts: %w", err)
		}
		recs, err := attemptlog.Decode(msg.Headers(), msg.Data())
		if err != nil {
			continue // not an attempt record: nothing to show
		}
		for _, a := range recs {
			if err := fn(FromProto(a)); err != nil {
				return err
			}
		}
	}
}
