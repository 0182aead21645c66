package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/store"
)

// Why Current exists. The watch drops a tenant's entry a few milliseconds
// after an endpoint changes, in every process. A router that reads its
// local layer in between routes by the old endpoints: an event sent right
// after its endpoint was created (201 Created, then POST /v1/events) matched
// nothing and was acked, lost; one sent right after an endpoint was
// disabled was still delivered to it. Only the process whose API made the
// change drops the entry at once, so the all-in-one never showed it; the
// separate processes did (services/e2e, about one run in eight).
//
// Current closes the gap with the bucket's own order: it asks JetStream for
// the sequence of the last endpoint change stored and waits until the watch
// has applied it. Any change stored before an event was (the API answers only
// after the bucket stored it) is then seen. Callers share rounds: one
// request serves every caller that arrived before it was sent, so under load
// it costs one round trip per batch of events, not one per event.

// maxCurrentWait bounds how long Current waits for the watch to apply a
// change it was told of; a watch that far behind is stalled, and its own
// watchdog restarts it.
const maxCurrentWait = 5 * time.Second

// errWatchBehind is Current's error when the watch did not catch up in time.
var errWatchBehind = errors.New("endpoint change watch is behind the store")

// Current returns once the cache reflects every endpoint change stored
// before it was called, or with an error if it cannot tell (NATS
// unreachable, the watch stalled): the caller should then try again later
// rather than act on what the cache holds. While the watch does not run,
// the cache keeps no entries of its own and Current returns at once.
//
// It needs WithJetStream; a cache watching through kv.Watch (tests of the
// cache's layers) has no sequence to compare and returns at once.
func (c *Cache) Current(ctx context.Context) error {
	if c.js == nil {
		return nil
	}
	r := c.rounds.join(c.currentRound)
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// currentRound is one round of Current: the last change's sequence, then
// the wait for the watch to apply it.
func (c *Cache) currentRound() error {
	if !c.ready.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), maxCurrentWait)
	defer cancel()
	last, err := c.lastChange(ctx)
	if err != nil {
		return fmt.Errorf("endpoint changes: %w", err)
	}
	for {
		c.amu.Lock()
		applied, advanced := c.applied, c.advanced
		c.amu.Unlock()
		if applied >= last || !c.ready.Load() {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			currentWaits.Inc()
			return fmt.Errorf("%w: applied %d of %d", errWatchBehind, applied, last)
		}
	}
}

// lastChange is the stream sequence of the last endpoint change in the
// bucket, 0 if there is none. A replicated bucket is asked through its
// stream's leader (STREAM.MSG.GET): a direct get may be answered by a
// follower that has not stored the change yet. A bucket on one server is
// asked with a direct get, which skips the JetStream API's queue.
func (c *Cache) lastChange(ctx context.Context) (uint64, error) {
	q := &c.lastQuery
	if c.direct.Load() {
		m, err := c.js.Conn().RequestWithContext(ctx, q.direct, q.body)
		if err != nil {
			return 0, err
		}
		if seq := m.Header.Get(jetstream.SequenceHeader); seq != "" {
			return strconv.ParseUint(seq, 10, 64)
		}
		if m.Header.Get("Status") == "404" {
			return 0, nil
		}
		return 0, fmt.Errorf("last change: %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
	}
	m, err := c.js.Conn().RequestWithContext(ctx, q.leader, q.body)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("last change: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return 0, nil
	case resp.Error != nil:
		return 0, fmt.Errorf("last change: %s (%d)", resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return 0, errors.New("last change: empty answer")
	}
	return resp.Message.Seq, nil
}

// changeSubjects are the bucket stream's subjects of endpoint keys: what
// the watch follows.
func (c *Cache) changeSubjects() string { return "$KV." + c.kv.Bucket() + "." + store.WatchPattern }

// lastQuery is lastChange's request, the same for every round: its body
// and the subjects of the direct get and of the leader's get.
type lastQuery struct {
	body           []byte
	direct, leader string
}

// newLastQuery builds c's lastQuery; c.js is set.
func (c *Cache) newLastQuery() lastQuery {
	body, _ := json.Marshal(map[string]string{"last_by_subj": c.changeSubjects()}) // strings only: cannot fail
	prefix := c.js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	if prefix[len(prefix)-1] != '.' {
		prefix += "."
	}
	stream := "KV_" + c.kv.Bucket()
	return lastQuery{body: body, direct: prefix + "DIRECT.GET." + stream, leader: prefix + "STREAM.MSG.GET." + stream}
}

// apply records that the watch has applied the bucket's changes up to seq.
// A (re)started watch sets it outright (from is true): everything up to
// where it starts is reflected, since the cache was emptied, even if the
// bucket was recreated and its sequences start over.
func (c *Cache) apply(seq uint64, from bool) {
	c.amu.Lock()
	defer c.amu.Unlock()
	if seq > c.applied || from {
		c.applied = seq
		close(c.advanced)
		c.advanced = make(chan struct{})
	}
}

// rounds runs one round of a check at a time for any number of callers. A
// caller joins the round that will start next, never one already running:
// what a running round learnt may predate the caller.
type rounds struct {
	mu      sync.Mutex
	running bool
	next    *round
}

type round struct {
	done chan struct{}
	err  error
}

// join returns the round the caller waits for, starting it if none runs.
func (rs *rounds) join(check func() error) *round {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.next == nil {
		rs.next = &round{done: make(chan struct{})}
	}
	r := rs.next
	if !rs.running {
		rs.running = true
		rs.next = nil
		go rs.run(r, check)
	}
	return r
}

// run runs rounds back to back while callers wait for one.
func (rs *rounds) run(r *round, check func() error) {
	for r != nil {
		r.err = check()
		close(r.done)
		rs.mu.Lock()
		r, rs.next = rs.next, nil
		rs.running = r != nil
		rs.mu.Unlock()
	}
}
