package router

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// A producer's event is decoded by whichever reader comes first; the
// second takes that result once, and a reader after it decodes again.
// Invalid and large events are not kept.
func TestDecodedIsTakenOnceBySecondReader(t *testing.T) {
	_, js := connect(t, testenv.NATS(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	bodies := []string{
		`{"id":"e1","data":{"n":1}}`,
		`{"id":"e2"}`, // invalid: no data
		`{"id":"e3","data":"` + strings.Repeat("x", decodedMaxBytes) + `"}`,
	}
	for _, b := range bodies {
		m := nats.NewMsg(bus.EventSubject("tn_1", "post.published"))
		m.Data = []byte(b)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for range bodies {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, msg)
	}
	d := NewDecoded()
	kept := func(m jetstream.Msg) bool {
		meta, _ := m.Metadata()
		return d.slots[meta.Sequence.Stream%decodedSlots].Load() != nil
	}

	first, err := d.FromNATS(msgs[0])
	if err != nil || !kept(msgs[0]) {
		t.Fatalf("first reader: %v, kept %v", err, kept(msgs[0]))
	}
	second, err := d.FromNATS(msgs[0])
	if err != nil || kept(msgs[0]) {
		t.Fatalf("second reader: %v, still kept %v", err, kept(msgs[0]))
	}
	if first == second || !proto.Equal(first, second) {
		t.Fatalf("the readers got %p %v and %p %v: want equal events, each its own", first, first, second, second)
	}
	want, err := FromNATS(msgs[0])
	if err != nil || !proto.Equal(second, want) {
		t.Fatalf("taken %v, decoded %v (%v)", second, want, err)
	}
	if _, err := d.FromNATS(msgs[0]); err != nil || !kept(msgs[0]) {
		t.Fatalf("a third reader decodes again and keeps it: %v, kept %v", err, kept(msgs[0]))
	}

	for _, m := range msgs[1:2] {
		if _, err := d.FromNATS(m); err == nil || kept(m) {
			t.Fatalf("invalid event: err %v, kept %v", err, kept(m))
		}
	}
	if _, err := d.FromNATS(msgs[2]); err != nil || kept(msgs[2]) {
		t.Fatalf("large event: err %v, kept %v", err, kept(msgs[2]))
	}

	// A nil memo decodes every time.
	var none *Decoded
	if ev, err := none.FromNATS(msgs[0]); err != nil || !proto.Equal(ev, want) {
		t.Fatalf("nil memo: %v %v", ev, err)
	}
}
