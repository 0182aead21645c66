package sender

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// ClassPayload is the error class of an attempt whose event body could not
// be read from the payload store. It is retried like any failed attempt,
// unless the body is gone for good: then the job is dead-lettered at once,
// with the reason.
const ClassPayload deliver.Class = "payload"

// Payloads is what the sender needs of the payload store (package
// payload): reading event bodies kept out of the message path, and saying
// when a job no longer needs one.
type Payloads interface {
	Get(ctx context.Context, ref *heraldv1.PayloadRef) ([]byte, error)
	Release(ctx context.Context, ref *heraldv1.PayloadRef, id string) error
}

// WithPayloads sets the payload store that holds bodies of events with a
// payload_ref.
func WithPayloads(p Payloads) Option { return func(s *Sender) { s.payloads = p } }

var errNoPayloads = errors.New("the event body is in the payload store, and this sender has none configured")

// build fetches the event's body when it is stored out of the message path
// (normally a cache hit), then builds the request as Build does.
func (s *Sender) build(ctx context.Context, ep *store.Endpoint, job *heraldv1.DeliveryJob, attempt int, now time.Time) (deliver.Request, error) {
	data := job.Event.Data
	if ref := job.Event.GetPayloadRef(); ref != nil {
		if s.payloads == nil {
			return deliver.Request{}, &payloadError{errNoPayloads}
		}
		var err error
		if data, err = s.payloads.Get(ctx, ref); err != nil {
			return deliver.Request{}, &payloadError{err}
		}
	}
	return Build(ep, job.Event, data, attempt, now)
}

// payloadError marks a failure to read the event body.
type payloadError struct{ err error }

func (e *payloadError) Error() string { return e.err.Error() }
func (e *payloadError) Unwrap() error { return e.err }

// buildFailure is the outcome of an attempt whose request could not be
// built.
func buildFailure(err error) deliver.Outcome {
	var pe *payloadError
	if errors.As(err, &pe) {
		return deliver.Outcome{Class: ClassPayload, Err: err.Error()}
	}
	return deliver.Outcome{Class: deliver.RequestError, Err: err.Error()}
}

// bodyGone reports whether err says the event body will never be readable
// again (removed, expired, or invalid): no retry can help.
func bodyGone(err error) bool {
	var pe *payloadError
	return errors.As(err, &pe) && payload.Permanent(err)
}

// releases reports whether finishing job releases a stored body, which
// takes more than an ack (see finish).
func (s *Sender) releases(job *heraldv1.DeliveryJob) bool {
	return job.Event.GetPayloadRef() != nil && s.payloads != nil
}

// finish acks a job that needs nothing more (delivered, or dropped with
// its endpoint). A job holding a stored body waits for JetStream to confirm
// the ack, then releases the body: released before, a lost ack would
// redeliver a job whose body may be gone. If the confirmation does not
// come, the body is kept, and the bucket's TTL removes it.
func (s *Sender) finish(ctx context.Context, msg jetstream.Msg, job *heraldv1.DeliveryJob, log zerolog.Logger) {
	if !s.releases(job) {
		s.settle(msg.Ack(), "ack")
		return
	}
	ref := job.Event.GetPayloadRef()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := msg.DoubleAck(actx)
	cancel()
	if err != nil {
		settleErrors.WithLabelValues("ack").Inc()
		log.Warn().Err(err).Msg("ack not confirmed; the event body is kept until the events retention")
		return
	}
	var seq uint64
	if meta, err := msg.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	// One release per job message: the same release repeated is counted once.
	id := job.Id + ":" + job.ReplayId + ":" + strconv.FormatUint(seq, 10)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.payloads.Release(rctx, ref, id); err != nil {
		log.Warn().Err(err).Str("payload", ref.Key).Msg("event body not released; kept until the events retention")
	}
}
