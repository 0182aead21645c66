package service

import (
	"sync"
	"sync/atomic"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Queue depths are collected at scrape time from the process's current
// JetStream connection. The collector is registered once per process and
// pointed at the connection of the latest Run, so tests that run Herald
// several times in one process do not register it twice.
var (
	streams     atomic.Pointer[bus.StreamCollector]
	streamsOnce sync.Once
)

type currentStreams struct{}

func (currentStreams) Describe(ch chan<- *prometheus.Desc) {
	bus.NewStreamCollector(nil).Describe(ch)
}

func (currentStreams) Collect(ch chan<- prometheus.Metric) {
	if c := streams.Load(); c != nil {
		c.Collect(ch)
	}
}

func collectStreams(js jetstream.JetStream) {
	streams.Store(bus.NewStreamCollector(js))
	streamsOnce.Do(func() { prometheus.MustRegister(currentStreams{}) })
}
