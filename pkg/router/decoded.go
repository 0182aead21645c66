package router

import (
	"sync/atomic"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go/jetstream"
)

// Sizes of a Decoded memo: it keeps at most decodedSlots events, each of
// at most decodedMaxBytes of JSON, so at most 4 MiB of bodies.
const (
	decodedSlots    = 1024
	decodedMaxBytes = 4 << 10
)

// Decoded remembers, for a moment, the events of EVENTS that producers
// published as JSON and one reader of this process decoded, so that the
// other reader of the same message takes the result instead of decoding
// and validating it again. The router and the attempt history projection
// of a process each read every event (two consumers on EVENTS), and for
// producers' JSON the strict decoding is the costliest part of either.
//
// An event is kept in a slot chosen by its stream sequence until the
// second reader takes it or a later event takes the slot; a reader that
// finds no entry (the other reader came first long ago, or never) decodes
// as before. Entries match on the stream's sequence and time, so a
// recreated stream's reused sequences never match an old entry. Only
// events that decode and validate are kept: an invalid event is decoded,
// and refused, by each reader. A nil *Decoded decodes every time.
type Decoded struct {
	slots [decodedSlots]atomic.Pointer[decodedEvent]
}

type decodedEvent struct {
	seq uint64
	ts  int64 // the stream's timestamp, unix ns
	ev  *heraldv1.Event
}

// NewDecoded returns an empty memo, to share between a process's router
// (WithDecoded) and history projection.
func NewDecoded() *Decoded { return &Decoded{} }

// FromNATS is the package's FromNATS through the memo: the event decoded
// by the other reader of msg if it is still here, else decoded now (and
// kept for the other reader). The caller owns the event it gets.
func (d *Decoded) FromNATS(msg jetstream.Msg) (*heraldv1.Event, error) {
	if d == nil {
		return FromNATS(msg)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return FromNATS(msg)
	}
	seq, ts := meta.Sequence.Stream, meta.Timestamp.UnixNano()
	slot := &d.slots[seq%decodedSlots]
	if e := slot.Load(); e != nil && e.seq == seq && e.ts == ts && slot.CompareAndSwap(e, nil) {
		return e.ev, nil
	}
	ev, err := FromNATS(msg)
	if err != nil || len(msg.Data()) > decodedMaxBytes {
		return ev, err
	}
	slot.Store(&decodedEvent{seq: seq, ts: ts, ev: copyEvent(ev)})
	return ev, nil
}

// copyEvent is a copy of ev that shares its data bytes and payload
// reference, which no reader changes (the router replaces the reference,
// never edits it).
func copyEvent(ev *heraldv1.Event) *heraldv1.Event {
	return &heraldv1.Event{
		Id: ev.Id, TenantId: ev.TenantId, Type: ev.Type, Data: ev.Data, EndpointId: ev.EndpointId,
		AcceptedAtUnixMs: ev.AcceptedAtUnixMs, PayloadRef: ev.PayloadRef,
	}
}
