// Package dlq is what happens to a job after its attempts are used: listing
// the dead letters of a tenant, replaying them (one, a list, or all matching
// a filter) as a resumable, rate-limited background job, recovering an
// endpoint's dead deliveries since a time, and resending an event.
//
// The guarantees:
//
//   - A dead letter leaves the DLQ only after its replayed job is stored:
//     the job is published to DELIVERIES with Nats-Msg-Id
//     "<job id>:replay:<dlq seq>", the PubAck awaited, and only then the DLQ
//     message deleted by sequence. A replay interrupted anywhere and run
//     again republishes at most the one job it was working on, which
//     JetStream deduplicates (within the duplicate window).
//   - Replay records live in the JetStream KV bucket "herald-replays" and
//     carry an owner lease: a process that dies leaves its replays to be
//     continued by whichever process sees the lease expire (or at once,
//     after a graceful stop, which releases the lease).
//   - A replay covers the dead letters stored when it started: jobs that die
//     again while it runs are not replayed a second time by it.
//   - Replayed and resent jobs keep their event id (receivers dedupe on it)
//     and get a fresh attempt budget.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/match"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

var (
	dlqMessages = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_dlq_messages",
		Help: "Dead letters in the DLQ stream, all tenants.",
	})
	replayJobs = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_replay_jobs_total",
		Help: "Dead letters handled by replays, by result: replayed, failed (kept in the DLQ), skipped (gone before their turn).",
	}, []string{"result"})
	replaysFinished = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_replays_total",
		Help: "Replays finished, by state: done or failed.",
	}, []string{"state"})
	replaysRunning = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_replays_running",
		Help: "Replays this process is running.",
	})
	replayRemaining = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_replay_remaining_jobs",
		Help: "Dead letters still to handle in the replays this process runs (progress).",
	})
	resentJobs = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_resend_jobs_total",
		Help: "Jobs published by event resends.",
	})
)

// Errors.
var (
	// ErrNotFound: no such dead letter, replay, event or endpoint for the
	// tenant. Another tenant's ids are not found, by construction.
	ErrNotFound = errors.New("not found")
	// ErrEndpointDisabled: the endpoint must be re-enabled first, or what is
	// sent to it would be dead-lettered again at once.
	ErrEndpointDisabled = errors.New("endpoint is disabled")
	// ErrNoEndpoints: no enabled endpoint of the tenant wants the event.
	ErrNoEndpoints = errors.New("no enabled endpoint wants this event")
	// ErrBodyGone: the event's large body was already removed (every job
	// that needed it ended, or it expired), so it cannot be sent again.
	ErrBodyGone = errors.New("the event's body is no longer stored")
)

// Payloads counts the jobs that need a large event body, so a resend keeps
// the body alive until its jobs end.
type Payloads interface {
	Retain(ctx context.Context, ref *heraldv1.PayloadRef, n int, id string) error
}

// NotFoundError names what was not found; it matches ErrNotFound.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string        { return e.What + " not found" }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(format string, args ...any) error {
	return &NotFoundError{What: fmt.Sprintf(format, args...)}
}

// Endpoints is what the service needs of the endpoint store (the cache).
type Endpoints interface {
	Endpoint(ctx context.Context, tenant, id string) (store.Endpoint, error)
	Endpoints(ctx context.Context, tenant string) ([]store.Endpoint, error)
}

// endpoint returns the tenant's endpoint id; one the tenant does not have is
// ErrNotFound, whatever asked for it.
func (s *Service) endpoint(ctx context.Context, tenant, id string) (store.Endpoint, error) {
	ep, err := s.eps.Endpoint(ctx, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Endpoint{}, notFound("endpoint %s", id)
	}
	if err != nil {
		return store.Endpoint{}, fmt.Errorf("endpoint %s: %w", id, err)
	}
	return ep, nil
}

// Bucket is the KV bucket holding replay records.
const Bucket = "herald-replays"

// Defaults and limits.
const (
	DefaultRate      = 50   // jobs per second per replay
	MaxRate          = 1000 // jobs per second per replay
	DefaultLimit     = 50   // dead letters per page
	MaxLimit         = 100
	MaxReplayIDs     = 1000
	DefaultLease     = 15 * time.Second
	DefaultRecordTTL = 30 * 24 * time.Hour
	// DefaultEventScan bounds how many EVENTS stream positions the fallback
	// event finder looks at, newest first.
	DefaultEventScan = 1_000_000
	// untilSlack: a dead letter is stored shortly after its dead_at, so a
	// scan bounded by "until" reads this far past it before stopping.
	untilSlack = time.Minute
)

// Service lists, replays and resends. Run must be running in some process
// (the API processes) for replays to progress.
type Service struct {
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	eps       Endpoints
	finder    EventFinder
	payloads  Payloads
	log       zerolog.Logger
	now       func() time.Time
	owner     string
	lease     time.Duration
	rate      int
	replicas  int
	recordTTL time.Duration
	eventScan uint64

	kick  chan string
	ready chan struct{}
	act   activeSet

	mu  sync.Mutex
	dlq jetstream.Stream

	// afterPublish, in tests, runs after a replayed job is stored and before
	// its dead letter is deleted: the window a crash test aims at.
	afterPublish func(replayID string, seq uint64)
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Service) { s.log = l } }

// WithPayloads lets resends of large events count their jobs.
func WithPayloads(p Payloads) Option { return func(s *Service) { s.payloads = p } }

// WithEventFinder replaces the fallback that scans EVENTS to find an event
// by id (pkg/history's index, once it exists).
func WithEventFinder(f EventFinder) Option { return func(s *Service) { s.finder = f } }

// WithLease sets how long a replay's owner may be silent before another
// process continues the replay. Owners renew it at least every third of it.
func WithLease(d time.Duration) Option { return func(s *Service) { s.lease = d } }

// WithDefaultRate sets the replay rate (jobs per second) used when a
// request names none.
func WithDefaultRate(n int) Option { return func(s *Service) { s.rate = n } }

// WithReplicas sets the replica count of the replay bucket when created.
func WithReplicas(n int) Option { return func(s *Service) { s.replicas = n } }

// WithRecordTTL sets how long replay records are kept after their last change.
func WithRecordTTL(d time.Duration) Option { return func(s *Service) { s.recordTTL = d } }

// WithEventScan bounds the fallback event finder's scan of EVENTS.
func WithEventScan(n uint64) Option { return func(s *Service) { s.eventScan = n } }

// withOwner names this process in replay leases (tests run two in one).
func withOwner(o string) Option { return func(s *Service) { s.owner = o } }

// New returns the service, creating the replay bucket if needed. The DLQ,
// DELIVERIES and EVENTS streams must exist (bus.EnsureStreams).
func New(ctx context.Context, js jetstream.JetStream, eps Endpoints, opts ...Option) (*Service, error) {
	s := &Service{
		js: js, eps: eps, log: zerolog.Nop(), now: time.Now, lease: DefaultLease, rate: DefaultRate,
		replicas: 1, recordTTL: DefaultRecordTTL, eventScan: DefaultEventScan,
		owner: event.NewID("own"), kick: make(chan string, 64), ready: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.rate <= 0 || s.rate > MaxRate {
		s.rate = DefaultRate
	}
	if s.finder == nil {
		s.finder = NewStreamFinder(js, s.eventScan)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Herald DLQ replay jobs and their progress",
		History:     1,
		TTL:         s.recordTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    s.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open replay bucket: %w", err)
	}
	s.kv = kv
	return s, nil
}

// Entry is a dead letter as the API shows it.
type Entry struct {
	// ID is the DLQ stream sequence: stable, never reused.
	ID         uint64    `json:"id"`
	EndpointID string    `json:"endpoint_id"`
	JobID      string    `json:"job_id"`
	Event      EventView `json:"event"`
	Reason     string    `json:"reason"`
	DeadAt     time.Time `json:"dead_at"`
	// Skipped is true when no attempt was made because the endpoint was
	// disabled: the delivery was recorded here so that recover, once the
	// endpoint is enabled again, brings it back.
	Skipped bool `json:"skipped"`
	// Attempts are the outcomes the sender recorded with the dead letter.
	Attempts []AttemptView `json:"attempts"`
	// ReplayID is set when the job that died was itself a replay.
	ReplayID string `json:"replay_id,omitempty"`
	// AttemptsMade is how many attempts the job had made when it died. A
	// skipped job carries none of them in Attempts (the sender skipping it
	// knows only the count); the API fills them in from the history.
	AttemptsMade int `json:"-"`
}

// EventView is the original event of a dead letter.
type EventView struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	EndpointID string          `json:"endpoint_id,omitempty"`
	AcceptedAt time.Time       `json:"accepted_at"`
	// PayloadRef names the object-store entry holding a large body.
	PayloadRef *PayloadRef `json:"payload_ref,omitempty"`
}

// PayloadRef is a claim check for a body kept out of the message path.
type PayloadRef struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Size   int64  `json:"size"`
}

// AttemptView is one HTTP attempt's outcome.
type AttemptView struct {
	Number       uint32    `json:"attempt"`
	At           time.Time `json:"at"`
	StatusCode   int32     `json:"response_status"`
	LatencyMS    float64   `json:"latency_ms"`
	ErrorClass   string    `json:"error_class"`
	Error        string    `json:"error,omitempty"`
	ResponseBody string    `json:"response_body,omitempty"`
}

func entryOf(seq uint64, dl *heraldv1.DeadLetter) Entry {
	job := dl.GetJob()
	ev := job.GetEvent()
	e := Entry{
		ID: seq, EndpointID: job.GetEndpointId(), JobID: job.GetId(), Reason: dl.GetReason(),
		DeadAt: time.UnixMilli(dl.GetDeadAtUnixMs()).UTC(), ReplayID: job.GetReplayId(), Skipped: dl.GetSkipped(),
		Event: EventView{
			ID: ev.GetId(), Type: ev.GetType(), EndpointID: ev.GetEndpointId(),
			AcceptedAt: time.UnixMilli(ev.GetAcceptedAtUnixMs()).UTC(), Data: rawJSON(ev.GetData()),
		},
		Attempts:     make([]AttemptView, 0, len(dl.GetAttempts())),
		AttemptsMade: int(job.GetPriorAttempts()),
	}
	if ref := ev.GetPayloadRef(); ref != nil {
		e.Event.PayloadRef = &PayloadRef{Bucket: ref.Bucket, Key: ref.Key, Size: ref.Size}
	}
	for _, a := range dl.GetAttempts() {
		e.Attempts = append(e.Attempts, AttemptView{
			Number: a.Number, At: time.UnixMilli(a.AtUnixMs).UTC(), StatusCode: a.StatusCode,
			LatencyMS: float64(a.LatencyUs) / 1000, ErrorClass: a.ErrorClass, Error: a.Error,
			ResponseBody: strings.ToValidUTF8(string(a.ResponseBody), "\uFFFD"),
		})
	}
	return e
}

// rawJSON returns event data as JSON: it is validated JSON at intake, but a
// body that is not (or is absent) is shown as a string or null rather than
// breaking the listing.
func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(strings.ToValidUTF8(string(b), "\uFFFD"))
	return s
}

// Filter selects dead letters of one tenant. Zero fields select everything.
type Filter struct {
	EndpointID string `json:"endpoint_id,omitempty"`
	// EventType is an exact type, a prefix.* wildcard, or *.
	EventType string `json:"event_type,omitempty"`
	// Since and Until bound dead_at, both inclusive.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

func (f Filter) subject(tenant string) string {
	ep := f.EndpointID
	if ep == "" {
		ep = "*"
	}
	return bus.DLQSubject(tenant, ep)
}

// matches reports whether a decoded dead letter passes the filter's body
// conditions (the subject already selected tenant and endpoint).
func (f Filter) matches(dl *heraldv1.DeadLetter) bool {
	at := time.UnixMilli(dl.GetDeadAtUnixMs())
	if !f.Since.IsZero() && at.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && at.After(f.Until) {
		return false
	}
	if f.EventType != "" && !match.Matches([]string{f.EventType}, dl.GetJob().GetEvent().GetType()) {
		return false
	}
	return true
}

// pastUntil reports whether a scan in stream order can stop: messages
// stored after until plus slack cannot have died by until.
func (f Filter) pastUntil(stored time.Time) bool {
	return !f.Until.IsZero() && stored.After(f.Until.Add(untilSlack))
}

// Query is a page request of List.
type Query struct {
	Filter
	Limit int
	// Cursor is where the page starts: a next_cursor from the previous page
	// (a DLQ sequence), or 0 for the first page.
	Cursor uint64
}

// Page is one page of dead letters, oldest first.
type Page struct {
	Data []Entry `json:"data"`
	// NextCursor is set when more dead letters match; pass it as cursor,
	// with the same filters, for the next page.
	NextCursor *string `json:"next_cursor"`
}

// List returns a tenant's dead letters matching q, oldest first (stream
// order: the first listed are the first to expire).
func (s *Service) List(ctx context.Context, tenant string, q Query) (Page, error) {
	page := Page{Data: []Entry{}}
	if !event.IsToken(tenant) || (q.EndpointID != "" && !event.IsToken(q.EndpointID)) {
		return page, nil
	}
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	q.Limit = min(q.Limit, MaxLimit)
	from := position{seq: q.Cursor}
	if q.Cursor == 0 {
		from.time = q.Since
	}
	err := scan(ctx, s.js, bus.StreamDLQ, q.subject(tenant), from, 0, min(q.Limit+1, 64), func(m jetstream.Msg, meta *jetstream.MsgMetadata) (bool, error) {
		if q.pastUntil(meta.Timestamp) {
			return false, nil
		}
		dl := &heraldv1.DeadLetter{}
		if err := proto.Unmarshal(m.Data(), dl); err != nil {
			s.log.Warn().Err(err).Uint64("dead_letter_id", meta.Sequence.Stream).Msg("undecodable dead letter skipped")
			return true, nil
		}
		if !q.matches(dl) {
			return true, nil
		}
		if len(page.Data) == q.Limit {
			c := EncodeCursor(meta.Sequence.Stream)
			page.NextCursor = &c
			return false, nil
		}
		page.Data = append(page.Data, entryOf(meta.Sequence.Stream, dl))
		return true, nil
	})
	if err != nil {
		return Page{}, err
	}
	return page, nil
}

// Get returns one dead letter of a tenant.
func (s *Service) Get(ctx context.Context, tenant string, id uint64) (Entry, error) {
	dl, _, err := s.load(ctx, tenant, id)
	if err != nil {
		return Entry{}, err
	}
	return entryOf(id, dl), nil
}

// load reads the dead letter at seq if it belongs to tenant.
func (s *Service) load(ctx context.Context, tenant string, seq uint64) (*heraldv1.DeadLetter, string, error) {
	if seq == 0 {
		return nil, "", notFound("dead letter %d", seq)
	}
	st, err := s.dlqStream(ctx)
	if err != nil {
		return nil, "", err
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, "", notFound("dead letter %d", seq)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	rest, ok := strings.CutPrefix(raw.Subject, bus.DLQSubject(tenant, ""))
	if !ok || !event.IsToken(rest) {
		return nil, "", notFound("dead letter %d", seq)
	}
	dl := &heraldv1.DeadLetter{}
	if err := proto.Unmarshal(raw.Data, dl); err != nil || dl.Job == nil || dl.Job.Event == nil {
		return nil, "", fmt.Errorf("dead letter %d is undecodable: %v", seq, err)
	}
	return dl, rest, nil
}

// dlqStream is a handle on the DLQ stream for reads and deletes by
// sequence, looked up once.
func (s *Service) dlqStream(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dlq == nil {
		st, err := s.js.Stream(ctx, bus.StreamDLQ)
		if err != nil {
			return nil, fmt.Errorf("dlq stream: %w", err)
		}
		s.dlq = st
	}
	return s.dlq, nil
}

// position is where a scan starts: a stream sequence, else a time, else the
// beginning.
type position struct {
	seq  uint64
	time time.Time
}

// scan calls fn for every message on subject in stream order from from, up
// to and including sequence upTo (0: no bound), until fn returns false or
// nothing more is stored. It reads through a short-lived ephemeral consumer
// (no acks, in memory) filtered by subject, so the server skips other
// tenants' messages, placed on the stream's leader (see readerOnLeader).
func scan(ctx context.Context, js jetstream.JetStream, stream, subject string, from position, upTo uint64, batch int,
	fn func(jetstream.Msg, *jetstream.MsgMetadata) (bool, error)) error {
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     subject,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
	}
	switch {
	case from.seq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from.seq
	case !from.time.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &from.time
	}
	// A reader is created through the JetStream API, which a stream
	// leader's election leaves unanswered for a moment: ride it out briefly
	// before answering 503.
	var cons jetstream.Consumer
	err := bus.Retry(ctx, func(ctx context.Context) (err error) {
		cons, err = readerOnLeader(ctx, js, stream, cfg)
		return err
	}, bus.RetryFor(3*time.Second))
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer dropReader(ctx, js, stream, cons)
	pending := cons.CachedInfo().NumPending
	if pending == 0 {
		return nil
	}
	if batch <= 0 {
		batch = 64
	}
	empty := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// What the consumer has at once: Fetch would wait for a full batch.
		// An empty answer while messages are pending is asked again, never
		// read as the end.
		msgs, err := cons.FetchNoWait(batch)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		stop := false
		for m := range msgs.Messages() {
			if stop {
				continue // drain the batch
			}
			got++
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", stream, err)
			}
			pending = meta.NumPending
			if upTo > 0 && meta.Sequence.Stream > upTo {
				stop = true
				continue
			}
			more, err := fn(m, meta)
			if err != nil {
				return err
			}
			if !more {
				stop = true
			}
		}
		if stop || pending == 0 {
			return nil
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if got > 0 {
			empty = 0
			continue
		}
		if empty++; empty == 20 {
			return fmt.Errorf("read %s: %d messages pending, none delivered: %w", stream, pending, jetstream.ErrNoStreamResponse)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readerPlacements bounds how often readerOnLeader creates a consumer to
// land it on a replica that holds everything stored.
const readerPlacements = 10

// readerOnLeader creates the ephemeral consumer cfg on stream, on a server
// whose copy of the stream is complete: the stream leader, or a replica the
// leader reports current. The server places an R1 consumer on any of the
// stream's peers and reads from that peer's copy: on a follower still
// catching up (a node back from a restart) a listing silently missed the
// newest dead letters, and a replay would have skipped them. A consumer
// placed on a lagging replica is deleted and created again; a single
// server always matches.
func readerOnLeader(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	var seen []string
	for try := range readerPlacements {
		// The stream's state before the consumer starts: a replica current
		// then holds everything stored before the read began, and the
		// consumer counts what it will deliver from that copy.
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return nil, err
		}
		cons, err := js.CreateConsumer(ctx, stream, cfg)
		if err != nil {
			return nil, err
		}
		on := cons.CachedInfo().Cluster
		if on == nil || caughtUp(st.CachedInfo().Cluster, on.Leader) {
			return cons, nil
		}
		seen = append(seen, on.Leader)
		dropReader(ctx, js, stream, cons)
		if try > 2 { // all replicas lagging, or no consumer leader yet: give them a moment
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil, fmt.Errorf("no reader placed on a current replica in %d tries (placed on %v): %w", readerPlacements, seen, jetstream.ErrNoStreamResponse)
}

// caughtUp reports whether server holds the stream's whole copy: it is the
// leader, or a replica the leader reports current with no lag. Without
// cluster information (a single server) it does.
func caughtUp(stream *jetstream.ClusterInfo, server string) bool {
	if stream == nil || stream.Leader == "" {
		return true
	}
	if server == stream.Leader {
		return true
	}
	for _, r := range stream.Replicas {
		if r != nil && r.Name == server {
			return r.Current && r.Lag == 0
		}
	}
	return false
}

// dropReader deletes an ephemeral reader; its inactivity threshold removes
// it anyway if this fails.
func dropReader(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	_ = js.DeleteConsumer(dctx, stream, cons.CachedInfo().Name)
	cancel()
}

// refreshGauge sets herald_dlq_messages from the stream's state.
func (s *Service) refreshGauge(ctx context.Context) {
	st, err := s.js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		return
	}
	dlqMessages.Set(float64(st.CachedInfo().State.Msgs))
}
