package listen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// ErrNotWaiting answers a Response for a request nobody waits for any
// more: it timed out, or the stream that carried it closed.
var ErrNotWaiting = errors.New("no attempt waits for this answer: it timed out or its stream closed")

// respondTimeout bounds Respond's wait for the relay holding the request.
const respondTimeout = 2 * time.Second

// backlog is how many requests a relay holds for its stream before NATS
// drops more (their attempts then time out and are retried).
const backlog = 256

// Relay connects CLI streams to the senders' requests. One serves a whole
// API process.
type Relay struct {
	nc *nats.Conn
}

// NewRelay returns a Relay on nc.
func NewRelay(nc *nats.Conn) *Relay { return &Relay{nc: nc} }

// waiting is a request relayed to the CLI, waiting for its answer.
type waiting struct {
	reply    string // the sender's inbox
	deadline time.Time
}

// Serve relays the requests of listen endpoint id to fn, one at a time in
// arrival order, until ctx ends or fn fails. ready (if not nil) is called
// once requests reach this relay, so a CLI can say it is listening only
// when an event sent then would reach it. fn should hand the request
// down the CLI's stream and return: the answer comes through Respond, to
// this or any other API process. When Serve returns, the attempts still
// waiting are failed at once rather than left to time out.
func (r *Relay) Serve(ctx context.Context, id string, ready func(), fn func(Request) error) error {
	var (
		mu      sync.Mutex
		pending = map[string]waiting{}
	)
	answers, err := r.nc.Subscribe(replySubject(id), func(m *nats.Msg) {
		var resp Response
		if json.Unmarshal(m.Data, &resp) != nil {
			return
		}
		mu.Lock()
		w, ok := pending[resp.RequestID]
		delete(pending, resp.RequestID)
		mu.Unlock()
		if !ok {
			return // another relay's, or late: Respond times out
		}
		if err := r.nc.Publish(w.reply, m.Data); err == nil {
			_ = m.Respond(nil)
		}
	})
	if err != nil {
		return fmt.Errorf("listen: subscribe to answers: %w", err)
	}
	defer func() { _ = answers.Unsubscribe() }()
	reqs := make(chan *nats.Msg, backlog)
	sub, err := r.nc.ChanQueueSubscribe(Subject(id), queue, reqs)
	if err != nil {
		return fmt.Errorf("listen: subscribe to requests: %w", err)
	}
	defer func() {
		_ = sub.Unsubscribe()
		mu.Lock()
		defer mu.Unlock()
		for _, w := range pending {
			r.fail(w.reply, "the herald listen stream closed before its answer came")
		}
	}()
	if err := r.nc.FlushTimeout(respondTimeout); err != nil { // the server has both subscriptions
		return fmt.Errorf("listen: subscribe: %w", err)
	}
	if ready != nil {
		ready()
	}
	prune := time.NewTicker(time.Second)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-prune.C:
			mu.Lock()
			for k, w := range pending {
				if !w.deadline.IsZero() && now.After(w.deadline) {
					delete(pending, k)
				}
			}
			mu.Unlock()
		case m := <-reqs:
			if m.Header.Get(headerPing) != "" {
				_ = m.Respond(nil)
				continue
			}
			var req Request
			if err := json.Unmarshal(m.Data, &req); err != nil || m.Reply == "" {
				continue
			}
			if ms, err := strconv.ParseInt(m.Header.Get(headerDeadline), 10, 64); err == nil {
				req.Deadline = time.UnixMilli(ms)
				if time.Now().After(req.Deadline) {
					continue
				}
			}
			req.ID = nuid.Next()
			mu.Lock()
			pending[req.ID] = waiting{reply: m.Reply, deadline: req.Deadline}
			mu.Unlock()
			if err := fn(req); err != nil {
				return err
			}
		}
	}
}

// fail answers a waiting attempt with an error.
func (r *Relay) fail(reply, why string) {
	b, _ := json.Marshal(Response{Error: why})
	_ = r.nc.Publish(reply, b)
}

// Respond hands the CLI's answer to the relay that holds its request,
// wherever it runs. ErrNotWaiting: no relay holds it (any more).
func (r *Relay) Respond(ctx context.Context, id string, resp Response) error {
	if resp.RequestID == "" {
		return ErrNotWaiting
	}
	if len(resp.Body) > MaxResponseBody {
		resp.Body = resp.Body[:MaxResponseBody]
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, respondTimeout)
	defer cancel()
	_, err = r.nc.RequestWithContext(ctx, replySubject(id), b)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded):
		return ErrNotWaiting
	default:
		return fmt.Errorf("listen: hand the answer over: %w", err)
	}
}
