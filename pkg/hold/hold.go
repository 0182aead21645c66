// Package hold keeps the delivery jobs of paused endpoints until they are
// resumed.
//
// A sender that finds a job's endpoint paused hands the job to Hold, which
// stores it on the HELD stream (herald.held.<tenant>.<endpoint>) and
// returns only once JetStream has it; the sender then acks the job. HELD is
// not consumed: jobs wait there, in arrival order, for as long as the events
// retention (the stream's MaxAge), and cost nothing meanwhile. The backlog
// of an endpoint (how many, since when) is read from the stream's
// per-subject state.
//
// The releaser (Run) looks at every endpoint with held jobs about once a
// second, and at once after an endpoint changes:
//
//   - active again: its jobs go back to DELIVERIES in order, each published
//     with Nats-Msg-Id "released:<HELD sequence>@<HELD creation>", and are
//     removed from HELD only after every publish before them was acked;
//   - disabled: its jobs go to the DLQ as skipped dead letters, as the
//     sender records a job of a disabled endpoint, so recover brings them
//     back once it is enabled;
//   - deleted: its jobs are dropped, as the sender drops them.
//
// Every move is idempotent (message ids, and removal by purging the
// endpoint's subject up to the last job moved), so several releasers may
// run at once, one per sender replica, without a job moved twice.
package hold

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/trace"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

var jobs = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_hold_jobs_total",
	Help: "Jobs of paused endpoints by step: held, released (back to DELIVERIES), skipped (endpoint disabled meanwhile: DLQ), dropped (endpoint deleted).",
}, []string{"result"})

// Endpoints is what the releaser needs of the endpoint cache.
type Endpoints interface {
	Endpoint(ctx context.Context, tenant, id string) (store.Endpoint, error)
}

// Payloads is what the releaser needs of the payload store: a dropped job
// no longer needs its event's stored body.
type Payloads interface {
	Release(ctx context.Context, ref *heraldv1.PayloadRef, id string) error
}

// Backlog is what an endpoint has waiting in HELD.
type Backlog struct {
	Count int
	// Oldest is when the oldest waiting job was held (zero when none): it
	// leaves HELD the events retention after that.
	Oldest time.Time
}

// Store holds jobs, reports backlogs and releases them.
type Store struct {
	js       jetstream.JetStream
	eps      Endpoints
	payloads Payloads
	log      zerolog.Logger
	every    time.Duration
	batch    int
	kick     chan struct{}

	mu     sync.Mutex
	stream jetstream.Stream
}

// Option configures a Store.
type Option func(*Store)

// WithEndpoints sets where the releaser reads endpoints (the cache). A
// Store without it holds and reports, and Run does nothing.
func WithEndpoints(e Endpoints) Option { return func(s *Store) { s.eps = e } }

// WithPayloads lets dropped jobs release their event's stored body.
func WithPayloads(p Payloads) Option { return func(s *Store) { s.payloads = p } }

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Store) { s.log = l } }

// WithInterval sets how often the releaser looks for endpoints to release
// when nothing tells it one changed (1 s by default).
func WithInterval(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.every = d
		}
	}
}

// withBatch sets how many jobs of one endpoint a pass moves before it
// looks at the others (tests make it small).
func withBatch(n int) Option { return func(s *Store) { s.batch = n } }

// New returns a Store over the HELD stream, which must exist
// (bus.EnsureStreams).
func New(js jetstream.JetStream, opts ...Option) *Store {
	s := &Store{js: js, log: zerolog.Nop(), every: time.Second, batch: 1000, kick: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Hold stores job on HELD and returns once JetStream has it. The message id
// is the job's id, replay id and attempt count, so the same job message
// held twice (its sender died before acking it) is stored once. A job held,
// released and held again within the duplicate window has the same id: the
// duplicate answer then names a message no longer in HELD, and the job is
// stored again under an id extended with that sequence.
func (s *Store) Hold(ctx context.Context, job *heraldv1.DeliveryJob) error {
	b, err := proto.Marshal(job)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	st, err := s.heldStream(ctx)
	if err != nil {
		return err
	}
	base := job.Id + ":" + job.ReplayId + ":" + strconv.FormatUint(uint64(job.PriorAttempts), 10)
	id := base
	for range 16 {
		// The job's trace (package trace) waits with it.
		ack, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: bus.HeldSubject(job.TenantId, job.EndpointId), Data: b, Header: trace.Inject(ctx, nil)},
			jetstream.WithMsgID(id), jetstream.WithExpectStream(bus.StreamHeld))
		if err != nil {
			return fmt.Errorf("hold job: %w", err)
		}
		if !ack.Duplicate {
			jobs.WithLabelValues("held").Inc()
			return nil
		}
		_, err = st.GetMsg(ctx, ack.Sequence)
		switch {
		case err == nil:
			return nil // held already, still waiting
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return fmt.Errorf("hold job: check the earlier copy: %w", err)
		}
		id = base + ":" + strconv.FormatUint(ack.Sequence, 10)
	}
	return fmt.Errorf("hold job %s: held and released too often within the duplicate window", job.Id)
}

// Backlog returns what endpoint of tenant has waiting in HELD.
func (s *Store) Backlog(ctx context.Context, tenant, endpoint string) (Backlog, error) {
	all, err := s.backlogs(ctx, bus.HeldSubject(tenant, endpoint))
	if err != nil {
		return Backlog{}, err
	}
	return all[endpoint], nil
}

// Backlogs returns the backlog of the endpoints of tenant named (every one
// when none is named) that have one, by endpoint id: one request for the
// counts of all, and one per endpoint returned for its oldest. A listing
// names the endpoints of its page.
func (s *Store) Backlogs(ctx context.Context, tenant string, endpoints ...string) (map[string]Backlog, error) {
	return s.backlogs(ctx, bus.HeldSubject(tenant, "*"), endpoints...)
}

func (s *Store) backlogs(ctx context.Context, filter string, only ...string) (map[string]Backlog, error) {
	st, err := s.heldStream(ctx)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("held jobs: %w", err)
	}
	out := make(map[string]Backlog, len(info.State.Subjects))
	for subject, n := range info.State.Subjects {
		_, endpoint, ok := parseSubject(subject)
		if !ok || n == 0 || (len(only) > 0 && !slices.Contains(only, endpoint)) {
			continue
		}
		b := Backlog{Count: int(n)}
		m, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
		switch {
		case err == nil:
			b.Oldest = m.Time.UTC()
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue // released meanwhile
		default:
			return nil, fmt.Errorf("oldest held job: %w", err)
		}
		out[endpoint] = b
	}
	return out, nil
}

// heldStream returns the HELD stream handle, looked up once.
func (s *Store) heldStream(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream == nil {
		st, err := s.js.Stream(ctx, bus.StreamHeld)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", bus.StreamHeld, err)
		}
		s.stream = st
	}
	return s.stream, nil
}

// parseSubject splits herald.held.<tenant>.<endpoint>.
func parseSubject(subject string) (tenant, endpoint string, ok bool) {
	rest, ok := strings.CutPrefix(subject, bus.HeldPrefix)
	if !ok {
		return "", "", false
	}
	tenant, endpoint, ok = strings.Cut(rest, ".")
	if !ok || tenant == "" || endpoint == "" || strings.Contains(endpoint, ".") {
		return "", "", false
	}
	return tenant, endpoint, true
}
