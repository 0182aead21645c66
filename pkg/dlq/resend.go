package dlq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/router"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// EventFinder finds a stored event of a tenant by id, or ErrNotFound.
type EventFinder interface {
	FindEvent(ctx context.Context, tenant, id string) (*heraldv1.Event, error)
}

// StreamFinder finds events by reading EVENTS backwards from the newest, in
// windows that double in size, over the tenant's subjects only; it gives up
// after a bounded number of stream positions. It needs no index, which makes
// it right for recent events and a fallback for an index (pkg/history).
type StreamFinder struct {
	js      jetstream.JetStream
	maxScan uint64
}

// NewStreamFinder returns a finder that looks at most maxScan stream
// positions back (0: DefaultEventScan).
func NewStreamFinder(js jetstream.JetStream, maxScan uint64) *StreamFinder {
	if maxScan == 0 {
		maxScan = DefaultEventScan
	}
	return &StreamFinder{js: js, maxScan: maxScan}
}

// FindEvent returns the newest event of tenant with id.
func (f *StreamFinder) FindEvent(ctx context.Context, tenant, id string) (*heraldv1.Event, error) {
	if !event.IsToken(tenant) || event.ValidateID(id) != nil {
		return nil, notFound("event %s", id)
	}
	st, err := f.js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("events stream: %w", err)
	}
	state := st.CachedInfo().State
	if state.Msgs == 0 {
		return nil, notFound("event %s", id)
	}
	subject := bus.EventsPrefix + tenant + ".>"
	msgID := tenant + "/" + id // what ingest stores it under
	hi := state.LastSeq + 1    // exclusive
	window := uint64(1024)
	var scanned uint64
	for hi > state.FirstSeq && scanned < f.maxScan {
		lo := state.FirstSeq
		if hi-state.FirstSeq > window {
			lo = hi - window
		}
		var found *heraldv1.Event
		err := scan(ctx, f.js, bus.StreamEvents, subject, position{seq: lo}, hi-1, 256, func(m jetstream.Msg, _ *jetstream.MsgMetadata) (bool, error) {
			if ev := decodeEvent(m, msgID); ev != nil && ev.Id == id && ev.TenantId == tenant {
				found = ev // keep reading: the newest in the window wins
			}
			return true, nil
		})
		if err != nil {
			return nil, err
		}
		if found != nil {
			return found, nil
		}
		scanned += hi - lo
		hi = lo
		window = min(window*2, 1<<20)
	}
	return nil, notFound("event %s", id)
}

// decodeEvent reads an EVENTS message as the router does. Herald's own
// (protobuf) events are decoded only if stored under msgID.
func decodeEvent(m jetstream.Msg, msgID string) *heraldv1.Event {
	if m.Headers().Get(bus.HeaderEncoding) == bus.EncodingProto {
		if m.Headers().Get(nats.MsgIdHdr) != msgID {
			return nil
		}
		ev := &heraldv1.Event{}
		if proto.Unmarshal(m.Data(), ev) != nil {
			return nil
		}
		return ev
	}
	ev, err := router.FromNATS(m)
	if err != nil {
		return nil
	}
	return ev
}

// Resent says what a resend published.
type Resent struct {
	// ID marks the resent jobs (their replay_id, seen in attempts).
	ID      string      `json:"id"`
	EventID string      `json:"event_id"`
	Jobs    []ResentJob `json:"jobs"`
}

// ResentJob is one job a resend published.
type ResentJob struct {
	EndpointID string `json:"endpoint_id"`
	JobID      string `json:"job_id"`
}

// Resend publishes the event again, with a fresh attempt budget, to one
// endpoint (endpointID) or to every enabled endpoint that wants it (as the
// router matches). The jobs keep the event id, so receivers that already
// have it can dedupe.
func (s *Service) Resend(ctx context.Context, tenant, eventID, endpointID string) (Resent, error) {
	ev, err := s.finder.FindEvent(ctx, tenant, eventID)
	if err != nil {
		return Resent{}, err
	}
	var targets []store.Endpoint
	if endpointID != "" {
		ep, err := s.endpoint(ctx, tenant, endpointID)
		if errors.Is(err, ErrNotFound) || !event.IsToken(endpointID) {
			return Resent{}, notFound("endpoint %s", endpointID)
		}
		if err != nil {
			return Resent{}, err
		}
		if !ep.Enabled {
			return Resent{}, fmt.Errorf("%w: enable endpoint %s before resending to it", ErrEndpointDisabled, endpointID)
		}
		if !router.Matches(&ep, ev) {
			return Resent{}, fmt.Errorf("%w: endpoint %s does not receive %s events", ErrNoEndpoints, endpointID, ev.Type)
		}
		targets = append(targets, ep)
	} else {
		eps, err := s.eps.Endpoints(ctx, tenant)
		if err != nil {
			return Resent{}, fmt.Errorf("endpoints: %w", err)
		}
		for i := range eps {
			// Disabled endpoints match (their deliveries are recorded as
			// skipped) but a resend is a new request: it goes only where
			// it can be delivered.
			if eps[i].Enabled && router.Matches(&eps[i], ev) {
				targets = append(targets, eps[i])
			}
		}
		if len(targets) == 0 {
			return Resent{}, fmt.Errorf("%w: no enabled endpoint receives %s events", ErrNoEndpoints, ev.Type)
		}
	}
	out := Resent{ID: event.NewID("rsd"), EventID: ev.Id, Jobs: []ResentJob{}}
	if ref := ev.GetPayloadRef(); ref != nil && s.payloads != nil {
		// The new jobs need the body: count them before they exist, or the
		// first to finish could remove it from under the others.
		if err := s.payloads.Retain(ctx, ref, len(targets), out.ID); err != nil {
			return Resent{}, fmt.Errorf("%w: %v", ErrBodyGone, err)
		}
	}
	stamp := s.now().UnixMilli()
	for _, ep := range targets {
		job := &heraldv1.DeliveryJob{
			Id: event.JobID(tenant, ev.Id, ep.ID), TenantId: tenant, EndpointId: ep.ID, Event: ev,
		}
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := s.publishJob(pctx, job, out.ID, fmt.Sprintf("%s:resend:%d", job.Id, stamp))
		cancel()
		if err != nil {
			return out, err
		}
		resentJobs.Inc()
		out.Jobs = append(out.Jobs, ResentJob{EndpointID: ep.ID, JobID: job.Id})
	}
	s.log.Info().Str("tenant_id", tenant).Str("event_id", ev.Id).Str("resend_id", out.ID).Int("jobs", len(out.Jobs)).Msg("event resent")
	return out, nil
}
