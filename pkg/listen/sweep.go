package listen

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/store"
)

// DefaultGrace is how long a listen endpoint may go without a listener
// before the Sweeper deletes it: long enough for a CLI to reconnect after
// a network blip or a laptop's sleep, short enough that a killed CLI's
// endpoint does not collect deliveries for long.
const DefaultGrace = 2 * time.Minute

// Endpoints is what the Sweeper needs of the store of record
// (*store.Store).
type Endpoints interface {
	ListenEndpoints(ctx context.Context) ([]store.EndpointRef, error)
	DeleteListenEndpoint(ctx context.Context, tenant, id string) error
}

// Sweeper deletes the listen endpoints no CLI has listened to for the
// grace period. A CLI deletes its endpoint when it exits; the Sweeper
// covers the CLI that could not (killed, or its machine gone). Whether
// anyone listens is asked of NATS (Listening), so the truth is the live
// subscription, not a lease that could be lost or stale; what the Sweeper
// remembers between rounds only delays a deletion if lost. Every API
// process may run one: deleting twice is harmless.
type Sweeper struct {
	nc    *nats.Conn
	eps   Endpoints
	grace time.Duration
	log   zerolog.Logger
	now   func() time.Time
	// idle is when each endpoint was first seen without a listener.
	idle map[store.EndpointRef]time.Time
}

// A SweepOption configures a Sweeper.
type SweepOption func(*Sweeper)

// WithGrace sets how long an endpoint may go unlistened (default
// DefaultGrace).
func WithGrace(d time.Duration) SweepOption { return func(s *Sweeper) { s.grace = d } }

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) SweepOption { return func(s *Sweeper) { s.log = l } }

// NewSweeper returns a Sweeper of the listen endpoints in eps.
func NewSweeper(nc *nats.Conn, eps Endpoints, opts ...SweepOption) *Sweeper {
	s := &Sweeper{nc: nc, eps: eps, grace: DefaultGrace, log: zerolog.Nop(), now: time.Now, idle: map[store.EndpointRef]time.Time{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Run sweeps four times per grace period until ctx ends.
func (s *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(max(s.grace/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("listen endpoints not swept")
			}
		}
	}
}

// Sweep checks every listen endpoint once and deletes those unlistened
// for the grace period.
func (s *Sweeper) Sweep(ctx context.Context) error {
	refs, err := s.eps.ListenEndpoints(ctx)
	if err != nil {
		return err
	}
	seen := make(map[store.EndpointRef]bool, len(refs))
	for _, ref := range refs {
		seen[ref] = true
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		on, err := Listening(qctx, s.nc, ref.ID)
		cancel()
		if err != nil && ctx.Err() == nil {
			// A relay too busy to answer is listening.
			on = true
		}
		if on {
			delete(s.idle, ref)
			continue
		}
		since, ok := s.idle[ref]
		if !ok {
			s.idle[ref] = s.now()
			continue
		}
		if s.now().Sub(since) < s.grace {
			continue
		}
		if err := s.eps.DeleteListenEndpoint(ctx, ref.TenantID, ref.ID); err != nil {
			return err
		}
		delete(s.idle, ref)
		s.log.Info().Str("tenant_id", ref.TenantID).Str("endpoint_id", ref.ID).Dur("unlistened", s.now().Sub(since)).
			Msg("listen endpoint deleted: no herald listen for it")
	}
	for ref := range s.idle {
		if !seen[ref] {
			delete(s.idle, ref)
		}
	}
	return nil
}
