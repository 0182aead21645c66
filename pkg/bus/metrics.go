package bus

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// StreamCollector reports queue depths at scrape time: messages per stream
// (DLQ size included) and, per durable consumer, messages not yet delivered
// and delivered but not acked. Reading them at scrape time keeps the hot
// path free of bookkeeping.
//
// Each reading is a JetStream API request per stream and per page of its
// consumers, about ten in all, answered by the stream leaders. Readings are
// kept for a second (WithCacheFor), so that scrapers polling every process
// often (or several scrapers) cost the servers that at most once a second
// per process, whatever the scrape rate.
type StreamCollector struct {
	js       jetstream.JetStream
	msgs     *prometheus.Desc
	bytes    *prometheus.Desc
	pending  *prometheus.Desc
	ackPend  *prometheus.Desc
	redelivd *prometheus.Desc

	cacheFor time.Duration
	now      func() time.Time
	mu       sync.Mutex
	read     time.Time           // when last is from
	last     []prometheus.Metric // the last reading
}

// DefaultCacheFor is how long a StreamCollector keeps a reading.
const DefaultCacheFor = time.Second

// CollectorOption configures a StreamCollector.
type CollectorOption func(*StreamCollector)

// WithCacheFor sets how long a reading answers scrapes (0: every scrape
// reads anew).
func WithCacheFor(d time.Duration) CollectorOption {
	return func(c *StreamCollector) { c.cacheFor = max(d, 0) }
}

// NewStreamCollector returns a collector over Herald's streams; register it
// with prometheus.MustRegister.
func NewStreamCollector(js jetstream.JetStream, opts ...CollectorOption) *StreamCollector {
	c := &StreamCollector{
		js:       js,
		cacheFor: DefaultCacheFor,
		now:      time.Now,
		msgs:     prometheus.NewDesc("herald_stream_messages", "Messages stored per stream (DLQ: dead letters waiting).", []string{"stream"}, nil),
		bytes:    prometheus.NewDesc("herald_stream_bytes", "Bytes stored per stream.", []string{"stream"}, nil),
		pending:  prometheus.NewDesc("herald_consumer_pending", "Messages not yet delivered to a consumer (queue depth).", []string{"stream", "consumer"}, nil),
		ackPend:  prometheus.NewDesc("herald_consumer_ack_pending", "Messages delivered and not yet acked, including those waiting out a retry delay.", []string{"stream", "consumer"}, nil),
		redelivd: prometheus.NewDesc("herald_consumer_redelivered", "Messages redelivered and not yet acked.", []string{"stream", "consumer"}, nil),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *StreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.msgs, c.bytes, c.pending, c.ackPend, c.redelivd} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the last reading while it is
// fresh (see WithCacheFor), else a new one; concurrent scrapes share one.
func (c *StreamCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if now := c.now(); c.last == nil || now.Sub(c.read) >= c.cacheFor {
		c.last, c.read = c.readStreams(), now
	}
	ms := c.last
	c.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}

// readStreams reads every stream's and consumer's figures. A stream that
// cannot be read (NATS down) is left out rather than reported as empty.
func (c *StreamCollector) readStreams() []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ms := []prometheus.Metric{}
	for _, name := range []string{StreamEvents, StreamDeliveries, StreamRetries, StreamDLQ, StreamAttempts} {
		s, err := c.js.Stream(ctx, name) // reads the stream's info: one request, not two
		if err != nil {
			continue
		}
		info := s.CachedInfo()
		ms = append(ms,
			prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(info.State.Msgs), name),
			prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(info.State.Bytes), name))
		for cons := range s.ListConsumers(ctx).Info() {
			ms = append(ms,
				prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(cons.NumPending), name, cons.Name),
				prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(cons.NumAckPending), name, cons.Name),
				prometheus.MustNewConstMetric(c.redelivd, prometheus.GaugeValue, float64(cons.NumRedelivered), name, cons.Name))
		}
	}
	return ms
}
