package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/natsembed"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FloorFigures are what Herald's JetStream hops cost on their own, with
// nothing of Herald in between: the least a delivery on the all-in-one can
// cost on this machine while the pipeline keeps its shape, measured in the
// same run as Herald so that the two compare.
//
// The path is the single scenario's, one event to one endpoint, with NATS
// producers, in one process with an embedded nats-server reached in
// process (as the all-in-one does), Herald's own stream and consumer
// definitions (package bus), and 1 KiB events:
//
//   - a producer publishes each event to EVENTS (asynchronously, with a
//     Nats-Msg-Id);
//   - the router's consumer takes it, publishes one job to DELIVERIES
//     (with a Nats-Msg-Id), and acks the event once the job is stored;
//   - the sender's consumer takes the job and acks it.
//
// PipelineMicros is that alone, as fast as it goes: the hops the
// architecture fixes, each write, wake-up and ack carrying as many messages
// as the pass makes them (at a lower, even rate each carries fewer and
// costs more). HistoryMicros adds what Herald's history costs
// JetStream on the same path: a second consumer on EVENTS (the history
// projection's), and the attempt records, one ATTEMPTS message per 16
// deliveries (a sender's batches), taken and acked by a third consumer.
// None includes the HTTP request of a delivery (the baseline's client
// half) or any of Herald's own work; all include the producer's
// publishing, which Herald's figures leave to the bench.
type FloorFigures struct {
	Deliveries     int     `json:"deliveries"`
	PipelineMicros float64 `json:"pipeline_cpu_us_per_delivery"`
	PipelinePerSec float64 `json:"pipeline_per_s"`
	HistoryMicros  float64 `json:"with_history_cpu_us_per_delivery"`
	HistoryPerSec  float64 `json:"with_history_per_s"`
}

// floorAttemptBatch is how many attempt records the floor puts in one
// ATTEMPTS message.
const floorAttemptBatch = 16

// measureFloor runs the floor's path as fast as it goes, without and with
// the history's hops, n events each, in a scratch JetStream store under dir.
func measureFloor(ctx context.Context, dir string, n, size int) (FloorFigures, error) {
	f := FloorFigures{Deliveries: n}
	var err error
	if f.PipelineMicros, f.PipelinePerSec, err = floorOnce(ctx, dir, n, size, false); err != nil {
		return f, err
	}
	f.HistoryMicros, f.HistoryPerSec, err = floorOnce(ctx, dir, n, size, true)
	return f, err
}

// floorPubAckWait bounds the wait for a job's publish acknowledgement, as
// Herald's router bounds it: an event whose job was not stored comes back
// at once instead of after the consumer's AckWait (30 s).
const floorPubAckWait = 2 * time.Second

// floorPullExpiry bounds the floor's pull requests. In about one pass in
// eight (of 40, nats-server 2.15.2, nats.go 1.55.0, in-process) a consumer
// stopped receiving with thousands of messages pending: the server held no
// pull request of it (num_waiting 0, nothing unacked) while the client
// still counted on one, until that request's expiry (30 s by default) or
// two missed heartbeats made it pull again. The pass then took 31 s. With
// requests that expire after 2 s, such a pause lasts 2 s at most.
const floorPullExpiry = 2 * time.Second

// floorOnce returns the bench process's CPU per delivery (µs) and the
// deliveries per second of one pass of n events.
func floorOnce(ctx context.Context, dir string, n, size int, history bool) (us, perSec float64, err error) {
	store, err := os.MkdirTemp(dir, "floor-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(store)
	srv, err := natsembed.Start(natsembed.Config{StoreDir: store, DontListen: true})
	if err != nil {
		return 0, 0, err
	}
	defer srv.Shutdown()
	// One connection per role, as the all-in-one's roles have.
	connect := func() (jetstream.JetStream, error) {
		nc, err := srv.Connect()
		if err != nil {
			return nil, err
		}
		return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(floorPubAckWait))
	}
	var producer, router, sender, historian jetstream.JetStream
	for _, js := range []*jetstream.JetStream{&producer, &router, &sender, &historian} {
		if *js, err = connect(); err != nil {
			return 0, 0, err
		}
		defer (*js).Conn().Close()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := bus.EnsureStreams(ctx, producer, bus.Config{}); err != nil {
		return 0, 0, err
	}
	rc, err := bus.RouterConsumer(ctx, router, 0)
	if err != nil {
		return 0, 0, err
	}
	sc, err := bus.SenderConsumer(ctx, sender, bus.SenderConsumerConfig{})
	if err != nil {
		return 0, 0, err
	}

	failed := make(chan error, 1)
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	job := make([]byte, size+200) // a job: the event and its routing
	routing, err := rc.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			fail(err)
			return
		}
		id := strconv.FormatUint(md.Sequence.Stream, 10)
		fut, err := router.PublishMsgAsync(&nats.Msg{Subject: bus.DeliverySubject("floor", "ep"), Data: job}, jetstream.WithMsgID("job-"+id))
		if err != nil {
			fail(err)
			return
		}
		go func() {
			select {
			case <-fut.Ok():
				_ = m.Ack()
			case <-fut.Err():
				// As Herald's router does: the event comes back and its job
				// is published again (stored once, by its Nats-Msg-Id).
				_ = m.Nak()
			}
		}()
	}, jetstream.PullMaxMessages(64), jetstream.PullExpiry(floorPullExpiry))
	if err != nil {
		return 0, 0, err
	}
	defer routing.Stop()

	var delivered atomic.Int64
	done := make(chan struct{})
	record := make([]byte, 200) // an attempt record
	batch := make([]byte, 0, floorAttemptBatch*len(record))
	var inBatch int
	sending, err := sc.Consume(func(m jetstream.Msg) {
		// Consume calls this from one goroutine: the batch needs no lock.
		if history {
			batch, inBatch = append(batch, record...), inBatch+1
			if inBatch == floorAttemptBatch {
				if err := sender.Conn().Publish(bus.AttemptSubject("floor", "ep"), batch); err != nil {
					fail(err)
				}
				batch, inBatch = batch[:0], 0
			}
		}
		_ = m.Ack()
		if delivered.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullExpiry(floorPullExpiry))
	if err != nil {
		return 0, 0, err
	}
	defer sending.Stop()
	if history {
		for _, stream := range []string{bus.StreamEvents, bus.StreamAttempts} {
			hc, err := historian.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
				Durable: "floor-history", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			})
			if err != nil {
				return 0, 0, err
			}
			hcc, err := hc.Consume(func(m jetstream.Msg) { _ = m.Ack() }, jetstream.PullExpiry(floorPullExpiry))
			if err != nil {
				return 0, 0, err
			}
			defer hcc.Stop()
		}
	}

	body := make([]byte, size)
	for i := range body {
		body[i] = 'x'
	}
	cpu0, _ := ReadProc(os.Getpid())
	t0 := time.Now()
	for i := range n {
		if _, err := producer.PublishMsgAsync(&nats.Msg{Subject: bus.EventSubject("floor", "post.published"), Data: body},
			jetstream.WithMsgID("ev-"+strconv.Itoa(i))); err != nil {
			return 0, 0, fmt.Errorf("floor: publish: %w", err)
		}
	}
	select {
	case <-done:
	case err := <-failed:
		return 0, 0, fmt.Errorf("floor: %w", err)
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("floor: %d of %d delivered: %w", delivered.Load(), n, ctx.Err())
	}
	elapsed := time.Since(t0)
	cpu1, ok := ReadProc(os.Getpid())
	if !ok {
		return 0, 0, errors.New("floor: cannot read the bench process's CPU time")
	}
	return math.Round((cpu1.CPUSeconds - cpu0.CPUSeconds) * 1e6 / float64(n)), math.Round(float64(n) / elapsed.Seconds()), nil
}
