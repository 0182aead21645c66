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
	err = bus.Retry(ctx, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.js.PublishMsg(pctx, &nats.Msg{Subject: bus.DeliverySubject(j.TenantId, j.EndpointId), Data: b},
			jetstream.WithMsgID(msgID), jetstream.WithExpectStream(bus.StreamDeliveries))
		return err
	}, bus.RetryTries(retryTries), bus.RetryBackoff(bus.Doubling(200*time.Millisecond, time.Second)))
	if err != nil {
		return fmt.Errorf("store job: %w", err)
	}
	return nil
}

// retryTries is how many times a replay tries one JetStream call (see
// bus.Retry): a replay that cannot store a job counts it failed and goes on.
const retryTries = 4
