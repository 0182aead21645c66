// Package ops publishes Herald's operational events (an endpoint disabled,
// a message out of attempts, an endpoint recovered). They are stored in
// EVENTS on herald.ops.<tenant> like any producer's event, so a tenant's
// endpoints can subscribe to them, and operators can watch the subjects with
// any NATS client. An endpoint receives one only if it names its type
// exactly: wildcards never match them (router.Matches).
package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Operational event types: the one list of them (IsOps reads it).
const (
	EndpointDisabled         = "endpoint.disabled"
	EndpointRecovered        = "endpoint.recovered"
	MessageAttemptsExhausted = "message.attempt.exhausted"
)

// IsOps reports whether typ is an operational event type. Only filters
// naming such a type exactly match it, and failures delivering one emit
// none, so a failing endpoint cannot feed itself a stream of them.
func IsOps(typ string) bool {
	switch typ {
	case EndpointDisabled, EndpointRecovered, MessageAttemptsExhausted:
		return true
	}
	return false
}

// Publisher emits operational events.
type Publisher struct {
	js  jetstream.JetStream
	now func() time.Time
}

// New returns a Publisher.
func New(js jetstream.JetStream) *Publisher { return &Publisher{js: js, now: time.Now} }

// Emit stores one operational event for tenant. key makes the event id
// stable, so the same fact reported twice (by two replicas, or a retry) is
// stored once within the duplicate window.
func (p *Publisher) Emit(ctx context.Context, tenant, typ, key string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("ops event data: %w", err)
	}
	id := "ops_" + strings.TrimPrefix(event.JobID(tenant, typ, key), "job_")
	ev := &heraldv1.Event{Id: id, TenantId: tenant, Type: typ, Data: b, AcceptedAtUnixMs: p.now().UnixMilli()}
	raw, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("ops event: %w", err)
	}
	msg := &nats.Msg{Subject: bus.OpsSubject(tenant), Data: raw, Header: nats.Header{}}
	msg.Header.Set(bus.HeaderEncoding, bus.EncodingProto)
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(tenant+"/"+id), jetstream.WithExpectStream(bus.StreamEvents)); err != nil {
		return fmt.Errorf("store ops event: %w", err)
	}
	return nil
}
