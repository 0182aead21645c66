// Package bus is everything JetStream-shaped in Herald: stream and consumer
// definitions, subject names, and the idempotent set-up every service runs at
// start. Keeping it in one place means the subject grammar and the ack
// contract are written down once.
package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Stream names.
const (
	StreamEvents     = "EVENTS"
	StreamDeliveries = "DELIVERIES"
	StreamDLQ        = "DLQ"
	StreamAttempts   = "ATTEMPTS"
	StreamRetries    = "RETRIES"
	StreamHeld       = "HELD"
)

// Durable consumer names. Every replica of a role shares its role's consumer.
const (
	ConsumerRouter = "router"
	ConsumerSender = "sender"
	// ConsumerSenderDue is the senders' consumer of jobs back from a wait
	// in RETRIES (fired schedules, DuePrefix).
	ConsumerSenderDue = "sender-due"
)

// Subject prefixes.
const (
	EventsPrefix     = "herald.events."
	OpsPrefix        = "herald.ops."
	DeliveriesPrefix = "herald.deliveries."
	DLQPrefix        = "herald.dlq."
	AttemptsPrefix   = "herald.attempts."
	// RetryPrefix holds one-shot message schedules: jobs waiting longer
	// than a consumer should hold them. When one fires, the server publishes
	// the job on DuePrefix in the same stream, where the senders' second
	// consumer (ConsumerSenderDue) takes it.
	RetryPrefix = "herald.retry."
	DuePrefix   = "herald.due."
	// HeldPrefix holds the jobs of paused endpoints (package hold).
	HeldPrefix = "herald.held."
)

// HeaderEncoding marks messages Herald encoded itself as protobuf; messages
// without it on EVENTS are producers' JSON.
const (
	HeaderEncoding = "Herald-Encoding"
	EncodingProto  = "proto"
)

// Large event bodies travel as claim checks (package payload): the body is
// an object in PayloadBucket, and the event carries a reference to it.
const (
	// PayloadBucket is the JetStream object store bucket of event bodies
	// above the inline threshold.
	PayloadBucket = "herald-payloads"
	// HeaderPayloadRef, on a producer's JSON event published to NATS, names
	// the object in PayloadBucket that holds the event's data; the key must
	// start with "<tenant>/", and "data" is left out of the JSON.
	HeaderPayloadRef = "Herald-Payload-Ref"
	// StreamPayloadRefs counts, per stored body, the jobs that still need
	// it (counter subjects, PayloadRefsPrefix + a hash of the object key).
	StreamPayloadRefs = "PAYLOAD_REFS"
	PayloadRefsPrefix = "herald.payload_refs."
)

// EventSubject is where an event of type typ for tenant is published. The
// type's dots become subject tokens, so consumers can filter by prefix.
func EventSubject(tenant, typ string) string { return EventsPrefix + tenant + "." + typ }

// OpsSubject is where Herald's operational events for a tenant are stored;
// they are routed like producers' events.
func OpsSubject(tenant string) string { return OpsPrefix + tenant }

// DeliverySubject is where a job for one endpoint is published.
func DeliverySubject(tenant, endpoint string) string {
	return DeliveriesPrefix + tenant + "." + endpoint
}

// DLQSubject is where a dead-lettered job for one endpoint is kept.
func DLQSubject(tenant, endpoint string) string { return DLQPrefix + tenant + "." + endpoint }

// HeldSubject is where the jobs of a paused endpoint wait, in arrival
// order, until it is resumed.
func HeldSubject(tenant, endpoint string) string { return HeldPrefix + tenant + "." + endpoint }

// AttemptSubject is where attempt records of one endpoint are kept.
func AttemptSubject(tenant, endpoint string) string {
	return AttemptsPrefix + tenant + "." + endpoint
}

// RetrySubject is the schedule subject of one job waiting with attempts
// done: unique per pending schedule, as the server requires. job is the
// job's id, with its replay id appended for a replayed or resent job.
func RetrySubject(job string, attempts int) string {
	return RetryPrefix + job + "." + strconv.Itoa(attempts)
}

// DueSubject is where a fired schedule puts the job, in RETRIES; the
// senders consume it from there.
func DueSubject(tenant, endpoint, jobID string) string {
	return DuePrefix + tenant + "." + endpoint + "." + jobID
}

// DueTTL bounds how long a fired job is kept in RETRIES. The senders' due
// consumer takes it within milliseconds while a sender runs; the message
// stays after its ack (RETRIES keeps messages by limits) until the job's
// next schedule replaces it or this passes. It matches how long events are
// kept, so a job is not dropped while no sender runs for days.
const DueTTL = DefaultEventsMaxAge

// ParseEventSubject splits herald.events.<tenant>.<type...> into its parts.
func ParseEventSubject(subject string) (tenant, typ string, ok bool) {
	rest, found := strings.CutPrefix(subject, EventsPrefix)
	if !found {
		return "", "", false
	}
	tenant, typ, found = strings.Cut(rest, ".")
	if !found || tenant == "" || typ == "" {
		return "", "", false
	}
	return tenant, typ, true
}

// Config sizes the streams. Zero values take the defaults below.
type Config struct {
	// Replicas is the stream replica count: 1 for a single server, 3 for a
	// cluster that survives the loss of one node.
	Replicas int
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Id values: an
	// event id sent twice within it is stored once. It must outlast the
	// router's worst redelivery gap (its AckWait).
	DuplicateWindow time.Duration
	// EventsMaxAge is how long events are kept for lookup and resend.
	EventsMaxAge time.Duration
	// AttemptsMaxAge is the retention of the attempt history.
	AttemptsMaxAge time.Duration
	// DLQMaxAge is how long dead letters wait for a replay.
	DLQMaxAge time.Duration
}

// Defaults.
const (
	// DefaultAckWait is how long a message stays with a consumer's client
	// that neither acks nor reports progress (HERALD_ACK_WAIT).
	DefaultAckWait = 30 * time.Second
	// DefaultSenderMaxAckPending bounds the jobs handed out and not yet
	// acked across all senders (HERALD_SENDER_MAX_ACK_PENDING).
	DefaultSenderMaxAckPending = 20000
	DefaultDuplicateWindow     = 2 * time.Minute
	DefaultEventsMaxAge        = 7 * 24 * time.Hour
	DefaultAttemptsMaxAge      = 30 * 24 * time.Hour
	DefaultDLQMaxAge           = 30 * 24 * time.Hour
)

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.EventsMaxAge <= 0 {
		c.EventsMaxAge = DefaultEventsMaxAge
	}
	if c.AttemptsMaxAge <= 0 {
		c.AttemptsMaxAge = DefaultAttemptsMaxAge
	}
	if c.DLQMaxAge <= 0 {
		c.DLQMaxAge = DefaultDLQMaxAge
	}
	return c
}

// Streams returns the definitions of Herald's streams.
func (c Config) Streams() []jetstream.StreamConfig {
	c = c.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        StreamEvents,
			Description: "Producers' events, by tenant and type",
			Subjects:    []string{EventsPrefix + ">", OpsPrefix + "*"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.EventsMaxAge,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamRetries,
			Description: "Jobs waiting out a long retry delay, as message schedules",
			Subjects:    []string{RetryPrefix + ">", DuePrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			// One pending schedule per subject: a schedule published twice
			// (a sender died between publishing it and acking the job)
			// replaces itself instead of firing twice.
			MaxMsgsPerSubject: 1,
			AllowMsgSchedules: true,
			AllowMsgTTL:       true,
		},
		{
			Name:        StreamDeliveries,
			Description: "Delivery jobs, one per (event, endpoint); removed when acked",
			Subjects:    []string{DeliveriesPrefix + ">"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
		},
		{
			Name:        StreamDLQ,
			Description: "Jobs that used all their attempts, waiting for a replay",
			Subjects:    []string{DLQPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.DLQMaxAge,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
		},
		{
			Name:        StreamHeld,
			Description: "Jobs of paused endpoints, in arrival order, until resumed",
			Subjects:    []string{HeldPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			// Held no longer than their events are kept: a pause is a
			// break, not an archive.
			MaxAge:     c.EventsMaxAge,
			Storage:    jetstream.FileStorage,
			Replicas:   c.Replicas,
			Duplicates: c.DuplicateWindow,
		},
		{
			Name:        StreamAttempts,
			Description: "Every HTTP attempt's outcome, by tenant and endpoint",
			Subjects:    []string{AttemptsPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.AttemptsMaxAge,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		},
	}
}

// EnsureStreams creates Herald's streams or updates them to cfg. Every
// service runs it at start, so whichever starts first sets the system up and
// later ones converge on the same definitions. A DELIVERIES created by an
// earlier Herald sourced RETRIES' fired jobs; the update drops that source,
// as the senders now consume them from RETRIES directly.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	for _, sc := range cfg.Streams() {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// RouterConsumer is the durable consumer all router replicas share on EVENTS.
// AckWait bounds how long an event whose router died stays invisible; it is
// far below the duplicate window, so the jobs a redelivery republishes are
// deduplicated.
func RouterConsumer(ctx context.Context, js jetstream.JetStream, ackWait time.Duration) (jetstream.Consumer, error) {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	c, err := js.CreateOrUpdateConsumer(ctx, StreamEvents, jetstream.ConsumerConfig{
		Durable:       ConsumerRouter,
		Description:   "Matches events to endpoints and publishes delivery jobs",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: 4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("router consumer: %w", err)
	}
	return c, nil
}

// SenderConsumerConfig tunes the shared sender consumer.
type SenderConsumerConfig struct {
	// AckWait is how long a job stays with a sender that neither acks nor
	// reports progress; senders send InProgress during long requests, so it
	// bounds only how long a dead sender's jobs wait to move on.
	AckWait time.Duration
	// MaxAckPending bounds jobs handed out and not yet acked, including jobs
	// waiting out a NakWithDelay.
	MaxAckPending int
}

// SenderConsumer is the durable pull consumer all sender replicas share on
// DELIVERIES. It has no BackOff: delays come from NakWithDelay alone (the two
// combine badly, see docs/architecture.md).
func SenderConsumer(ctx context.Context, js jetstream.JetStream, sc SenderConsumerConfig) (jetstream.Consumer, error) {
	return senderConsumer(ctx, js, StreamDeliveries, jetstream.ConsumerConfig{
		Durable:     ConsumerSender,
		Description: "Sends delivery jobs to endpoints",
	}, sc)
}

// SenderDueConsumer is the durable pull consumer all sender replicas share
// on RETRIES' fired jobs. The senders take them from RETRIES themselves
// rather than have DELIVERIES source them: a stream source lost fired jobs
// across stream leader changes (nats-server 2.15.2, R3), a consumer's
// acks do not. Its start is the stream's beginning, so a consumer deleted by
// an operator and recreated sends the fired jobs RETRIES keeps again:
// duplicates, never loss.
func SenderDueConsumer(ctx context.Context, js jetstream.JetStream, sc SenderConsumerConfig) (jetstream.Consumer, error) {
	return senderConsumer(ctx, js, StreamRetries, jetstream.ConsumerConfig{
		Durable:       ConsumerSenderDue,
		Description:   "Sends jobs back from a wait in RETRIES",
		FilterSubject: DuePrefix + ">",
	}, sc)
}

func senderConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, sc SenderConsumerConfig) (jetstream.Consumer, error) {
	if sc.AckWait <= 0 {
		sc.AckWait = DefaultAckWait
	}
	if sc.MaxAckPending <= 0 {
		sc.MaxAckPending = DefaultSenderMaxAckPending
	}
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	cfg.AckWait = sc.AckWait
	cfg.MaxAckPending = sc.MaxAckPending
	// Unlimited: a job delayed by an endpoint's concurrency cap or rate
	// limit is redelivered without an attempt, so delivery counts are not
	// attempt counts. The sender's own accounting dead-letters jobs.
	cfg.MaxDeliver = -1
	cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	c, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("sender consumer on %s: %w", stream, err)
	}
	return c, nil
}

// IsRetryable reports whether a JetStream call failed for a reason that may
// pass: no responders while a server or a stream leader restarts, a
// timeout, a lost or reconnecting connection, a consumer being recreated,
// or JetStream answering 503 (temporarily unavailable). Matched by error
// identity, never by message text.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	for _, target := range retryable {
		if errors.Is(err, target) {
			return true
		}
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && api.Code == 503
}

var retryable = []error{
	context.DeadlineExceeded,
	nats.ErrTimeout,
	nats.ErrNoResponders,
	nats.ErrConnectionClosed,
	nats.ErrConnectionReconnecting,
	nats.ErrDisconnected,
	jetstream.ErrNoStreamResponse,
	jetstream.ErrNoHeartbeat,
	jetstream.ErrConsumerNotFound,
	jetstream.ErrJetStreamNotEnabled, // what an account-info call says while no server answers
}

// Consume runs consume until ctx ends, starting it again a second after it
// returns: a consumer deleted by an operator, a server restart or a lost
// connection is recreated instead of leaving its role idle until someone
// restarts the process. It returns nil when ctx ends while consume runs,
// and consume's last error when ctx ends while it was failing (its
// consumer could not be created or read), so that the role's caller learns
// it stopped without working.
func Consume(ctx context.Context, log zerolog.Logger, role string, consume func(context.Context) error) error {
	for ctx.Err() == nil {
		err := consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn().Err(err).Msg(role + " consumer stopped; recreating")
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s consumer: %w", role, err)
		case <-time.After(time.Second):
		}
	}
	return nil
}
