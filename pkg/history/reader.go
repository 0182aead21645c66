package history

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/router"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Reader answers history queries: from the index, and for an event's body
// from EVENTS by the sequence the index recorded (and from the payload
// store, for data kept out of the event).
type Reader struct {
	idx      Index
	js       jetstream.JetStream
	payloads *payload.Store

	mu     sync.Mutex
	events jetstream.Stream
}

// ReaderOption configures a Reader.
type ReaderOption func(*Reader)

// WithPayloads lets EventData read the data of events whose body is kept
// in the payload store (data above its inline threshold).
func WithPayloads(p *payload.Store) ReaderOption { return func(r *Reader) { r.payloads = p } }

// NewReader returns a Reader over idx; js fetches event bodies and records
// test attempts.
func NewReader(idx Index, js jetstream.JetStream, opts ...ReaderOption) *Reader {
	r := &Reader{idx: idx, js: js}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Attempts lists an endpoint's attempts, newest first. A time range
// starts the index's read at its end (Until) and stops it at its start
// (Since); Keep is applied to what is read, reading on until the page is
// full, the history ends, or MaxScan attempts were read.
func (r *Reader) Attempts(ctx context.Context, tenant, endpoint string, q Query) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	if q.Keep == nil && q.Since.IsZero() && q.Until.IsZero() {
		return r.idx.Attempts(ctx, tenant, endpoint, q)
	}
	inner := Query{Status: q.Status, Cursor: q.Cursor, Limit: max(q.Limit, 100)}
	if inner.Cursor == "" && !q.Until.IsZero() {
		// Before every real member: the read starts at Until inclusive.
		inner.Cursor = cursor{Score: q.Until.UnixMilli() + 1, Member: "\x00"}.encode()
	}
	var out Page
	for scanned := 0; ; {
		p, err := r.idx.Attempts(ctx, tenant, endpoint, inner)
		if err != nil {
			return Page{}, err
		}
		for i, a := range p.Attempts {
			if !q.Since.IsZero() && a.At.Before(q.Since) {
				return out, nil
			}
			scanned++
			if (q.Until.IsZero() || !a.At.After(q.Until)) && (q.Keep == nil || q.Keep(a)) {
				out.Attempts = append(out.Attempts, a)
			}
			if len(out.Attempts) == q.Limit || scanned >= MaxScan {
				if i < len(p.Attempts)-1 || p.NextCursor != "" {
					out.NextCursor = cursor{Score: a.At.UnixMilli(), Member: a.ID}.encode()
				}
				return out, nil
			}
		}
		if p.NextCursor == "" {
			return out, nil
		}
		inner.Cursor = p.NextCursor
	}
}

// Counts returns, per endpoint named, how its attempts since then went.
func (r *Reader) Counts(ctx context.Context, tenant string, endpoints []string, since time.Time) (map[string]Counts, error) {
	return r.idx.Counts(ctx, tenant, endpoints, since)
}

// Event is what the history knows of one event.
type Event struct {
	ID         string
	Type       string
	EndpointID string
	// AcceptedAt is zero when the event itself is unknown (a test send, or
	// an event older than the events' retention): only its attempts are.
	AcceptedAt time.Time
	// Data is the producer's JSON; nil once the event left EVENTS, and
	// nil when the data is kept out of the event (see DataRef).
	Data json.RawMessage
	// DataRef names the data kept in the payload store, for data above its
	// inline threshold; EventData reads it. Event leaves it unread: most
	// callers want the event's state, not a body of up to 5 MiB.
	DataRef     *heraldv1.PayloadRef
	Attempts    []Attempt
	DeadLetters []DeadLetter
}

// Event returns what is known of event id of tenant, or ErrNotFound.
func (r *Reader) Event(ctx context.Context, tenant, id string) (Event, error) {
	en, err := r.idx.Event(ctx, tenant, id)
	if err != nil {
		return Event{}, err
	}
	if en.Record == nil && len(en.Attempts) == 0 && len(en.DeadLetters) == 0 {
		return Event{}, ErrNotFound
	}
	ev := Event{ID: id, Attempts: en.Attempts, DeadLetters: en.DeadLetters}
	slices.SortFunc(ev.Attempts, func(a, b Attempt) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Number, b.Number), cmp.Compare(a.ID, b.ID))
	})
	if rec := en.Record; rec != nil {
		ev.Type, ev.EndpointID, ev.AcceptedAt = rec.Type, rec.EndpointID, rec.AcceptedAt
		if stored, err := r.fetch(ctx, tenant, id, rec.Seq); err == nil {
			ev.Data, ev.DataRef = json.RawMessage(stored.Data), stored.PayloadRef
		} else if !errors.Is(err, ErrNotFound) {
			return Event{}, err
		}
	} else if len(ev.Attempts) > 0 {
		ev.Type = ev.Attempts[0].EventType
	}
	return ev, nil
}

// EventData is ev's data: the producer's JSON as the event holds it, or,
// for data kept out of the event, as the payload store holds it. It is nil
// when the event left EVENTS, or when its body was released (a large
// event's body goes once every endpoint that needed it was delivered) or
// this Reader has no payload store.
func (r *Reader) EventData(ctx context.Context, ev Event) (json.RawMessage, error) {
	if ev.DataRef == nil || r.payloads == nil {
		return ev.Data, nil
	}
	b, err := r.payloads.Get(ctx, ev.DataRef)
	if payload.Permanent(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("event body: %w", err)
	}
	return json.RawMessage(b), nil
}

func (r *Reader) stream(ctx context.Context) (jetstream.Stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.events == nil {
		s, err := r.js.Stream(ctx, bus.StreamEvents)
		if err != nil {
			return nil, err
		}
		r.events = s
	}
	return r.events, nil
}

// fetch reads the event stored at seq and checks it is the one asked for.
func (r *Reader) fetch(ctx context.Context, tenant, id string, seq uint64) (*heraldv1.Event, error) {
	s, err := r.stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("events stream: %w", err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNotFound // past the events' retention
	}
	if err != nil {
		return nil, fmt.Errorf("load event: %w", err)
	}
	ev, err := DecodeEvent(storedMsg{raw: raw})
	if err != nil || ev.TenantId != tenant || ev.Id != id {
		return nil, ErrNotFound
	}
	return ev, nil
}

// storedMsg lets a message read by sequence be decoded like a consumed
// one (router.FromNATS reads subject, headers, data and metadata only).
type storedMsg struct {
	jetstream.Msg
	raw *jetstream.RawStreamMsg
}

func (m storedMsg) Subject() string      { return m.raw.Subject }
func (m storedMsg) Data() []byte         { return m.raw.Data }
func (m storedMsg) Headers() nats.Header { return m.raw.Header }
func (m storedMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Stream: bus.StreamEvents, Sequence: jetstream.SequencePair{Stream: m.raw.Sequence},
		Timestamp: m.raw.Time, NumDelivered: 1}, nil
}

// Record stores an attempt made outside the senders (a test send) in
// ATTEMPTS, from where the projection indexes it like any other.
func (r *Reader) Record(ctx context.Context, a *heraldv1.Attempt) error {
	b, err := proto.Marshal(a)
	if err != nil {
		return err
	}
	_, err = r.js.PublishMsg(ctx, &nats.Msg{Subject: bus.AttemptSubject(a.TenantId, a.EndpointId), Data: b},
		jetstream.WithExpectStream(bus.StreamAttempts))
	return err
}

// Delivery is the state of an event at one endpoint.
type Delivery struct {
	EndpointID string `json:"endpoint_id"`
	// State is pending (routed, no attempt yet), held (the endpoint is
	// paused), delivered, retrying (see NextAttemptAt), dead (see Reason;
	// replayable from the DLQ) or skipped (the endpoint was disabled; see
	// Reason; recover brings it back).
	State         string     `json:"state"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	Reason        string     `json:"reason,omitempty"`
	Attempts      []Attempt  `json:"attempts"`
}

// Deliveries works out, per endpoint, what became of an event: the latest
// attempt or dead letter decides. An endpoint with neither that matches
// the event (router.Matches) and existed when it was accepted is held if
// it is paused now (the sender holds its job, or will), and pending if it
// is active and unchanged since the event was accepted: only then is the
// current configuration the one the event was routed with. Any other is
// left out rather than shown pending for a delivery that may never happen
// (its filter changed, or it is disabled: the sender records those as
// skipped moments later).
func Deliveries(ev Event, endpoints []store.Endpoint) []Delivery {
	byEP := map[string]*Delivery{}
	var order []string
	get := func(id string) *Delivery {
		d := byEP[id]
		if d == nil {
			d = &Delivery{EndpointID: id, Attempts: []Attempt{}}
			byEP[id] = d
			order = append(order, id)
		}
		return d
	}
	last := map[string]time.Time{}
	for _, a := range ev.Attempts { // oldest first
		d := get(a.EndpointID)
		d.Attempts = append(d.Attempts, a)
		if !a.At.Before(last[a.EndpointID]) {
			last[a.EndpointID] = a.At
			d.State, d.NextAttemptAt, d.Reason = a.State, a.NextAttemptAt, ""
			if d.State == "" {
				d.State = StateRetrying
			}
			if a.State == StateDead {
				d.Reason = a.Error
			}
		}
	}
	for _, dl := range ev.DeadLetters {
		d := get(dl.EndpointID)
		if !dl.At.Before(last[dl.EndpointID]) {
			last[dl.EndpointID] = dl.At
			d.State, d.NextAttemptAt, d.Reason = StateDead, nil, dl.Reason
			if dl.Skipped {
				d.State = StateSkipped
			}
		}
	}
	if ev.Type != "" && !ev.AcceptedAt.IsZero() {
		probe := &heraldv1.Event{Type: ev.Type, EndpointId: ev.EndpointID}
		for i := range endpoints {
			ep := &endpoints[i]
			if byEP[ep.ID] != nil || !router.Matches(ep, probe) || ep.CreatedAt.After(ev.AcceptedAt) {
				continue
			}
			switch {
			case ep.Status() == store.StatusPaused:
				get(ep.ID).State = StateHeld
			case ep.Status() == store.StatusActive && !ep.UpdatedAt.After(ev.AcceptedAt):
				get(ep.ID).State = StatePending
			}
		}
	}
	out := make([]Delivery, 0, len(order))
	for _, id := range order {
		out = append(out, *byEP[id])
	}
	slices.SortStableFunc(out, func(a, b Delivery) int { return cmp.Compare(a.EndpointID, b.EndpointID) })
	return out
}

// FindEvent returns the stored event id of tenant, as resend needs it: the
// index gives its position in EVENTS, one read fetches it. ErrNotFound when
// the index does not know it or it has left EVENTS.
func (r *Reader) FindEvent(ctx context.Context, tenant, id string) (*heraldv1.Event, error) {
	en, err := r.idx.Event(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if en.Record == nil {
		return nil, ErrNotFound
	}
	return r.fetch(ctx, tenant, id, en.Record.Seq)
}
