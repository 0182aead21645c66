package history

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/attemptlog"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/router"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

var (
	projected = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_history_records_total",
		Help: "Records written to the history index, by stream.",
	}, []string{"stream"})
	rebuilds = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_history_rebuilds_total",
		Help: "Times the history index was found empty and rebuilt by replaying the streams.",
	})
	indexUp = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_history_index_up",
		Help: "1 while the history index accepts writes, 0 while the projection waits for it.",
	})
)

// Consumer is the durable consumer name the projection uses on each of
// ATTEMPTS, DLQ and EVENTS; every replica of the router role shares it.
const Consumer = "history"

var streams = []string{bus.StreamAttempts, bus.StreamDLQ, bus.StreamEvents}

// Every stream's count exists from the start, at 0, so that rate() and
// increase() see the first records.
func init() {
	for _, st := range streams {
		projected.WithLabelValues(st)
	}
}

// Projector keeps an Index up to date with the streams. It acks a message
// only after the index stored it, and rebuilds the index by replaying the
// streams when its marker key is missing (a new, flushed or restarted-empty
// Redis).
type Projector struct {
	js      jetstream.JetStream
	idx     Index
	log     zerolog.Logger
	batch   int
	ackWait time.Duration
	check   time.Duration
	ready   chan struct{}
	once    sync.Once
	down    atomic.Bool
	decoded *router.Decoded
}

// ProjectorOption configures a Projector.
type ProjectorOption func(*Projector)

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) ProjectorOption { return func(p *Projector) { p.log = l } }

// WithBatch sets how many messages one index write takes at most.
func WithBatch(n int) ProjectorOption { return func(p *Projector) { p.batch = max(n, 1) } }

// WithMarkerCheck sets how often an idle projector checks that the index
// was not lost.
func WithMarkerCheck(d time.Duration) ProjectorOption { return func(p *Projector) { p.check = d } }

// WithDecoded shares decoded producers' events with the router of this
// process, so that each is decoded once (see router.Decoded).
func WithDecoded(d *router.Decoded) ProjectorOption { return func(p *Projector) { p.decoded = d } }

// NewProjector returns a projector writing to idx.
func NewProjector(js jetstream.JetStream, idx Index, opts ...ProjectorOption) *Projector {
	p := &Projector{js: js, idx: idx, log: zerolog.Nop(), batch: 500, ackWait: 30 * time.Second,
		check: 5 * time.Second, ready: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Ready is closed once the projection consumes.
func (p *Projector) Ready() <-chan struct{} { return p.ready }

var errRebuild = errors.New("history index lost; rebuilding")

// Run projects until ctx ends.
func (p *Projector) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := p.ensureIndex(ctx); err != nil {
			if ctx.Err() == nil {
				p.log.Warn().Err(err).Msg("history index not ready; retrying")
				sleep(ctx, time.Second)
			}
			continue
		}
		err := p.runOnce(ctx)
		if ctx.Err() == nil && err != nil && !errors.Is(err, errRebuild) {
			p.log.Warn().Err(err).Msg("history projection stopped; restarting")
			sleep(ctx, time.Second)
		}
	}
	return nil
}

// runOnce consumes all three streams until ctx ends or the index is lost.
func (p *Projector) runOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := p.consume(ctx, s)
				if errors.Is(err, errRebuild) {
					cancel(errRebuild)
					return
				}
				if ctx.Err() == nil {
					p.log.Warn().Err(err).Str("stream", s).Msg("history consumer stopped; recreating")
					sleep(ctx, time.Second)
				}
			}
		}()
	}
	// An idle projection still notices a lost index.
	t := time.NewTicker(p.check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return context.Cause(ctx)
		case <-t.C:
			if ok, err := p.idx.Marker(ctx); err == nil && !ok {
				cancel(errRebuild)
			}
		}
	}
}

// ensureIndex rebuilds the index if its marker is missing: it deletes the
// projection's consumers, so that they are created again at the start of
// each stream and replay everything the streams keep, then sets the
// marker. One process does it (a lock); the others wait for the marker.
func (p *Projector) ensureIndex(ctx context.Context) error {
	ok, err := p.idx.Marker(ctx)
	if err != nil || ok {
		return err
	}
	got, err := p.idx.Lock(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	if !got {
		for ctx.Err() == nil {
			if ok, err := p.idx.Marker(ctx); err != nil || ok {
				return err
			}
			sleep(ctx, 200*time.Millisecond)
		}
		return ctx.Err()
	}
	for _, s := range streams {
		err := p.js.DeleteConsumer(ctx, s, Consumer)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("reset %s consumer: %w", s, err)
		}
	}
	if err := p.idx.SetMarker(ctx); err != nil {
		return err
	}
	rebuilds.Inc()
	p.log.Info().Msg("history index is empty: replaying ATTEMPTS, DLQ and EVENTS to build it")
	return nil
}

func (p *Projector) consumer(ctx context.Context, stream string) (jetstream.Consumer, error) {
	c, err := p.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       Consumer,
		Description:   "Projects the stream into the attempt history index",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       p.ackWait,
		MaxAckPending: 20 * p.batch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("history consumer on %s: %w", stream, err)
	}
	return c, nil
}

// consume projects one stream in batches: it waits for a message, takes
// whatever else is already buffered (up to the batch size), writes the
// batch in one index call, and acks each message after the write.
func (p *Projector) consume(ctx context.Context, stream string) error {
	cons, err := p.consumer(ctx, stream)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2*p.batch), jetstream.PullHeartbeat(5*time.Second))
	if err != nil {
		return fmt.Errorf("history messages on %s: %w", stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	p.once.Do(func() { close(p.ready) })
	msgs := make([]jetstream.Msg, 0, p.batch)
	for {
		msg, err := it.Next(jetstream.NextMaxWait(time.Second))
		if errors.Is(err, nats.ErrTimeout) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		msgs = append(msgs[:0], msg)
		for len(msgs) < p.batch {
			m, err := it.Next(jetstream.NextMaxWait(time.Millisecond))
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		if err := p.write(ctx, stream, msgs); err != nil {
			return err
		}
	}
}

// write decodes msgs and stores them, retrying while the index is down.
// Messages that cannot be decoded are acked: there is nothing to show.
func (p *Projector) write(ctx context.Context, stream string, msgs []jetstream.Msg) error {
	var b Batch
	for _, m := range msgs {
		p.decode(stream, m, &b)
	}
	delay := 100 * time.Millisecond
	lastProgress := time.Now()
	for {
		// A batch in hand is written even while stopping, so that a
		// graceful stop acks what it took.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		marker, err := p.idx.Apply(wctx, &b)
		cancel()
		if err == nil {
			if p.down.CompareAndSwap(true, false) {
				p.log.Info().Msg("history index is back")
			}
			indexUp.Set(1)
			projected.WithLabelValues(stream).Add(float64(b.Len()))
			for _, m := range msgs {
				_ = m.Ack()
			}
			if !marker {
				return errRebuild
			}
			return nil
		}
		if ctx.Err() != nil {
			return nil // unacked: redelivered after AckWait
		}
		if p.down.CompareAndSwap(false, true) {
			p.log.Warn().Err(err).Msg("history index unavailable; the projection waits for it (attempts stay in their stream)")
		}
		indexUp.Set(0)
		if time.Since(lastProgress) > p.ackWait/3 {
			for _, m := range msgs {
				_ = m.InProgress()
			}
			lastProgress = time.Now()
		}
		sleep(ctx, delay)
		delay = min(2*delay, 5*time.Second)
	}
}

func (p *Projector) decode(stream string, m jetstream.Msg, b *Batch) {
	switch stream {
	case bus.StreamAttempts:
		recs, err := attemptlog.Decode(m.Headers(), m.Data())
		if err != nil {
			return
		}
		for _, a := range recs {
			if a.TenantId != "" && a.EndpointId != "" {
				b.Attempts = append(b.Attempts, TenantAttempt{Tenant: a.TenantId, Attempt: FromProto(a)})
			}
		}
	case bus.StreamDLQ:
		d := &heraldv1.DeadLetter{}
		if proto.Unmarshal(m.Data(), d) != nil {
			return
		}
		if tenant, v, ok := deadFromProto(d); ok {
			b.DeadLetters = append(b.DeadLetters, TenantDeadLetter{Tenant: tenant, DeadLetter: v})
		}
	case bus.StreamEvents:
		ev, err := decodeEvent(m, p.decoded)
		meta, merr := m.Metadata()
		if err != nil || merr != nil {
			return
		}
		b.Events = append(b.Events, TenantEvent{Tenant: ev.TenantId, EventRecord: EventRecord{
			ID: ev.Id, Type: ev.Type, EndpointID: ev.EndpointId, Seq: meta.Sequence.Stream,
			AcceptedAt: time.UnixMilli(ev.AcceptedAtUnixMs).UTC(),
		}})
	}
}

// DecodeEvent reads a message of EVENTS as the router does: protobuf when
// Herald stored it (Herald-Encoding: proto), else a producer's JSON.
func DecodeEvent(m jetstream.Msg) (*heraldv1.Event, error) { return decodeEvent(m, nil) }

// decodeEvent is DecodeEvent taking a producer's event that the router of
// this process decoded already from d (nil: none).
func decodeEvent(m jetstream.Msg, d *router.Decoded) (*heraldv1.Event, error) {
	if m.Headers().Get(bus.HeaderEncoding) == bus.EncodingProto {
		ev := &heraldv1.Event{}
		if err := proto.Unmarshal(m.Data(), ev); err != nil {
			return nil, fmt.Errorf("decode event: %w", err)
		}
		return ev, nil
	}
	return d.FromNATS(m)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
