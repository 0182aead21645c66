// This file stores a job again with a fresh attempt budget: what replays
// and resends both do, waiting for the PubAck so that nothing is counted as
// sent before JetStream holds it. retry is the one way this package rides
// out a brief JetStream outage (publishes here, the runner's reads and
// deletes).

package dlq

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

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
	err = retry(ctx, bus.IsRetryable, doublingBackoff, func() error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.js.PublishMsg(pctx, &nats.Msg{Subject: bus.DeliverySubject(j.TenantId, j.EndpointId), Data: b},
			jetstream.WithMsgID(msgID), jetstream.WithExpectStream(bus.StreamDeliveries))
		return err
	})
	if err != nil {
		return fmt.Errorf("store job: %w", err)
	}
	return nil
}

// retryTries is how many times retry runs an operation at most.
const retryTries = 4

// retry runs op until it succeeds, has run retryTries times, fails with an
// error retryable rejects, or ctx ends; it waits backoff(n) after the n-th
// failure (less if ctx ends first) and returns op's last error.
func retry(ctx context.Context, retryable func(error) bool, backoff func(try int) time.Duration, op func() error) error {
	for try := 1; ; try++ {
		err := op()
		if err == nil || try == retryTries || ctx.Err() != nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff(try)):
		}
	}
}

// linearBackoff waits 200 ms, 400 ms, 600 ms.
func linearBackoff(try int) time.Duration { return time.Duration(try) * 200 * time.Millisecond }

// doublingBackoff waits 200 ms, 400 ms, 800 ms.
func doublingBackoff(try int) time.Duration { return 200 * time.Millisecond << (try - 1) }

// anyError retries every failure.
func anyError(error) bool { return true }
