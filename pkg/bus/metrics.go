package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// StreamCollector reports queue depths at scrape time: messages per stream
// (DLQ size included) and, per durable consumer, messages not yet delivered
// and delivered but not acked. Reading them at scrape time keeps the hot
// path free of bookkeeping.
type StreamCollector struct {
	js       jetstream.JetStream
	msgs     *prometheus.Desc
	bytes    *prometheus.Desc
	pending  *prometheus.Desc
	ackPend  *prometheus.Desc
	redelivd *prometheus.Desc
}

// NewStreamCollector returns a collector over Herald's streams; register it
// with prometheus.MustRegister.
func NewStreamCollector(js jetstream.JetStream) *StreamCollector {
	return &StreamCollector{
		js:       js,
		msgs:     prometheus.NewDesc("herald_stream_messages", "Messages stored per stream (DLQ: dead letters waiting).", []string{"stream"}, nil),
		bytes:    prometheus.NewDesc("herald_stream_bytes", "Bytes stored per stream.", []string{"stream"}, nil),
		pending:  prometheus.NewDesc("herald_consumer_pending", "Messages not yet delivered to a consumer (queue depth).", []string{"stream", "consumer"}, nil),
		ackPend:  prometheus.NewDesc("herald_consumer_ack_pending", "Messages delivered and not yet acked, including those waiting out a retry delay.", []string{"stream", "consumer"}, nil),
		redelivd: prometheus.NewDesc("herald_consumer_redelivered", "Messages redelivered and not yet acked.", []string{"stream", "consumer"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.msgs, c.bytes, c.pending, c.ackPend, c.redelivd} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A stream that cannot be read
// (NATS down) is left out rather than reported as empty.
func (c *StreamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range []string{StreamEvents, StreamDeliveries, StreamRetries, StreamDLQ, StreamAttempts} {
		s, err := c.js.Stream(ctx, name) // reads the stream's info: one request, not two
		if err != nil {
			continue
		}
		info := s.CachedInfo()
		ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(info.State.Msgs), name)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(info.State.Bytes), name)
		for cons := range s.ListConsumers(ctx).Info() {
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(cons.NumPending), name, cons.Name)
			ch <- prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(cons.NumAckPending), name, cons.Name)
			ch <- prometheus.MustNewConstMetric(c.redelivd, prometheus.GaugeValue, float64(cons.NumRedelivered), name, cons.Name)
		}
	}
}
