package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/heraldhq/herald/pkg/bus"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// DLQEntry is one dead letter as Herald stored it.
type DLQEntry struct {
	EventID    string
	TenantID   string
	EndpointID string
	Reason     string
}

// DLQWatcher follows Herald's DLQ stream from its start with an ordered
// consumer and keeps every dead letter, so a ledger can count the jobs
// Herald gave up on.
type DLQWatcher struct {
	mu      sync.Mutex
	entries []DLQEntry
	bad     int
	cc      jetstream.ConsumeContext
}

// WatchDLQ starts following the DLQ stream over nc.
func WatchDLQ(ctx context.Context, nc *nats.Conn) (*DLQWatcher, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cons, err := js.OrderedConsumer(ctx, bus.StreamDLQ, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("dlq consumer: %w", err)
	}
	w := &DLQWatcher{}
	w.cc, err = cons.Consume(func(m jetstream.Msg) {
		dl := &heraldv1.DeadLetter{}
		w.mu.Lock()
		defer w.mu.Unlock()
		if err := proto.Unmarshal(m.Data(), dl); err != nil || dl.Job == nil || dl.Job.Event == nil {
			w.bad++
			return
		}
		w.entries = append(w.entries, DLQEntry{
			EventID: dl.Job.Event.Id, TenantID: dl.Job.TenantId, EndpointID: dl.Job.EndpointId, Reason: dl.Reason,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dlq consume: %w", err)
	}
	return w, nil
}

// Stop stops following.
func (w *DLQWatcher) Stop() {
	if w != nil && w.cc != nil {
		w.cc.Stop()
	}
}

// Count is the number of dead letters whose event id has prefix.
func (w *DLQWatcher) Count(prefix string) int {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.entries {
		if strings.HasPrefix(e.EventID, prefix) {
			n++
		}
	}
	return n
}

// Entries returns the dead letters whose event id has prefix.
func (w *DLQWatcher) Entries(prefix string) []DLQEntry {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []DLQEntry
	for _, e := range w.entries {
		if strings.HasPrefix(e.EventID, prefix) {
			out = append(out, e)
		}
	}
	return out
}
