package bus

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestStreamCollector reads queue depths from a real server at scrape time:
// messages per stream, and per consumer the messages not yet delivered and
// those delivered but not acked.
func TestStreamCollector(t *testing.T) {
	// Its own server, not NATS_URL's: the streams have their fixed names.
	js := testenv.ConnectJetStream(t, testenv.NATSServer(t).URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureStreams(ctx, js, Config{}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, EventSubject("t1", "post.published"), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := RouterConsumer(ctx, js, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(1)
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() { // delivered, not acked
	}

	c := NewStreamCollector(js)
	now := time.Now()
	c.now = func() time.Time { return now }
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	got := gather(t, reg)
	for key, want := range map[string]float64{
		"herald_stream_messages,stream=EVENTS":                                      3,
		"herald_stream_messages,stream=DELIVERIES":                                  0,
		"herald_consumer_pending,consumer=" + ConsumerRouter + ",stream=EVENTS":     2,
		"herald_consumer_ack_pending,consumer=" + ConsumerRouter + ",stream=EVENTS": 1,
		"herald_consumer_redelivered,consumer=" + ConsumerRouter + ",stream=EVENTS": 0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (reported: %v), want %v", key, v, ok, want)
		}
	}
	if got["herald_stream_bytes,stream=EVENTS"] <= 0 {
		t.Errorf("EVENTS bytes not reported: %v", got)
	}

	// A reading answers the scrapes of the next second; then a new one.
	if _, err := js.Publish(ctx, EventSubject("t1", "post.published"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	const events = "herald_stream_messages,stream=EVENTS"
	now = now.Add(DefaultCacheFor - time.Millisecond)
	if n := gather(t, reg)[events]; n != 3 {
		t.Fatalf("%s = %v within a second of the last reading, want its 3", events, n)
	}
	now = now.Add(time.Millisecond)
	if n := gather(t, reg)[events]; n != 4 {
		t.Fatalf("%s = %v a second after the last reading, want 4", events, n)
	}
	// Without the cache every scrape reads.
	reg = prometheus.NewRegistry()
	reg.MustRegister(NewStreamCollector(js, WithCacheFor(0)))
	gather(t, reg)
	if _, err := js.Publish(ctx, EventSubject("t1", "post.published"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if n := gather(t, reg)[events]; n != 5 {
		t.Fatalf("%s = %v with no cache, want 5", events, n)
	}
}

// gather scrapes reg: every sample's value by its name and labels.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = gaugeValue(m)
		}
	}
	return got
}

func gaugeValue(m *dto.Metric) float64 { return m.GetGauge().GetValue() }
