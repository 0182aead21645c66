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
)

// TestFromNATSPayloadRef covers the large-payload protocol's event side: a
// Herald-Payload-Ref header instead of "data", with a key under the
// tenant.
func TestFromNATSPayloadRef(t *testing.T) {
	_, js := connect(t, testenv.NATS(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, key, body, err string
	}{
		{"ref", "tn_1/reports/1.json", `{"id":"e1"}`, ""},
		{"ref and data", "tn_1/x", `{"id":"e2","data":{}}`, "must leave out"},
		{"another tenant", "tn_2/x", `{"id":"e3"}`, "not a key under"},
		{"tenant prefix only", "tn_1/", `{"id":"e4"}`, "not a key under"},
		{"similar tenant", "tn_10/x", `{"id":"e5"}`, "not a key under"},
		{"no ref, no data", "", `{"id":"e6"}`, "data"},
	}
	for _, tc := range cases {
		m := nats.NewMsg(bus.EventSubject("tn_1", "report.ready"))
		if tc.key != "" {
			m.Header.Set(bus.HeaderPayloadRef, tc.key)
		}
		m.Data = []byte(tc.body)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := FromNATS(msg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if ev.PayloadRef == nil || ev.PayloadRef.Key != tc.key || ev.PayloadRef.Bucket != bus.PayloadBucket || len(ev.Data) != 0 || ev.Id != "e1" {
			t.Fatalf("%s: event %v", tc.name, ev)
		}
	}
}
