package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Losing DELIVERIES (deleted by hand, or a server back without it) loses
// the jobs it held; the events they came from are still in EVENTS. To know
// which events to route again, the router remembers, for the last hour,
// how far it had routed and acked at each moment: every job DELIVERIES
// held was published after its oldest message was stored, so it came from
// an event past the floor the router had at that time. Routing again
// publishes jobs with the same ids, so routing an event twice while the new
// stream's duplicate window remembers the first makes one job; events
// already delivered are delivered again, which at-least-once allows
// (receivers dedupe on webhook-id).

const (
	floorEvery = 3 * time.Second
	floorKeep  = time.Hour
)

type floorSample struct {
	at  time.Time
	seq uint64 // every event up to seq was routed and acked at `at`
}

type floors struct {
	mu      sync.Mutex
	samples []floorSample // oldest first
}

func (f *floors) add(s floorSample) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.samples = append(f.samples, s)
	drop := 0
	for drop < len(f.samples)-1 && s.at.Sub(f.samples[drop].at) > floorKeep {
		drop++
	}
	f.samples = f.samples[drop:]
}

// at returns the floor at or before t, and false when t is older than
// every sample.
func (f *floors) at(t time.Time) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.samples) - 1; i >= 0; i-- {
		if !f.samples[i].at.After(t) {
			return f.samples[i].seq, true
		}
	}
	return 0, false
}

// trackFloor samples the router consumer's ack floor until ctx ends.
func (r *Router) trackFloor(ctx context.Context) {
	t := time.NewTicker(floorEvery)
	defer t.Stop()
	for {
		r.sampleFloor(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Router) sampleFloor(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	at := time.Now() // before asking: the floor can only have grown since
	c, err := r.js.Consumer(cctx, bus.StreamEvents, bus.ConsumerRouter)
	if err != nil {
		return
	}
	info, err := c.Info(cctx)
	if err != nil {
		return
	}
	r.floors.add(floorSample{at: at, seq: info.AckFloor.Stream})
}

// Reroute routes again every event the router may have turned into jobs
// since `since`: from the router's ack floor at that time up to the last
// event it has taken. It returns how many events it routed. The service
// calls it when DELIVERIES was lost, with since the time its oldest job was
// stored. Events the router had not acked yet are routed by the consumer as
// usual, and their jobs deduplicated.
func (r *Router) Reroute(ctx context.Context, since time.Time) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := r.js.Consumer(cctx, bus.StreamEvents, bus.ConsumerRouter)
	var info *jetstream.ConsumerInfo
	if err == nil {
		info, err = c.Info(cctx)
	}
	cancel()
	if err != nil {
		return 0, fmt.Errorf("reroute: router consumer: %w", err)
	}
	last := info.Delivered.Stream
	cfg := jetstream.OrderedConsumerConfig{}
	if floor, ok := r.floors.at(since); ok {
		if floor >= last {
			return 0, nil
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
	} else {
		// Older than the router remembers (it started since): events
		// accepted from a minute before, which covers routing delays.
		start := since.Add(-time.Minute)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		r.log.Warn().Time("since", since).Msg("reroute: no routing floor that old; routing events accepted from a minute before")
	}
	oc, err := r.js.OrderedConsumer(ctx, bus.StreamEvents, cfg)
	if err != nil {
		return 0, fmt.Errorf("reroute: read events: %w", err)
	}
	routed := 0
	for done := false; !done; {
		msg, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				break // nothing more stored
			}
			return routed, fmt.Errorf("reroute: read events: %w", err)
		}
		ev, seq, err := r.prepare(ctx, msg)
		if seq > last {
			break
		}
		done = seq == last
		if err != nil {
			continue // invalid, or a body not readable yet: the consumer decided about it already
		}
		if _, err := r.routePatiently(ctx, ev, seq); err != nil {
			return routed, fmt.Errorf("reroute: event %s: %w", ev.Id, err)
		}
		routed++
	}
	eventsRouted.WithLabelValues("rerouted").Add(float64(routed))
	r.log.Warn().Int("events", routed).Uint64("through", last).Msg("events routed again after DELIVERIES was lost")
	return routed, nil
}

// routePatiently routes ev, trying again for a while when JetStream is busy
// or away: the stream was just recreated, and answers in unusual ways.
func (r *Router) routePatiently(ctx context.Context, ev *heraldv1.Event, seq uint64) (n int, err error) {
	err = bus.Retry(ctx, func(ctx context.Context) (err error) {
		n, err = r.route(ctx, ev, seq)
		return err
	}, bus.RetryAny(), bus.RetryTries(10), bus.RetryBackoff(bus.Linear(200*time.Millisecond)))
	return n, err
}
