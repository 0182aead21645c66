package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/services/internal/apitest"
)

// Event types, in a fixed mix; who subscribes to which is in subscribers:
// every event reaches the healthy endpoint, four in ten the first-fail one,
// two in ten the always-fail one.
var eventTypes = [10]string{
	"order.created", "order.paid", "order.created", "order.paid", "order.refunded",
	"order.created", "order.paid", "order.created", "order.paid", "order.refunded",
}

// Producer is an open-loop producer: event i is due at start + i/rate
// whether or not earlier ones were answered, as real traffic is. Each event
// is sent until it is accepted, with the same id on every try (its
// idempotency key), backing off between tries, for at most giveUp. About
// one event in seven is published straight to NATS (JSON, Nats-Msg-Id = id)
// instead of POST /v1/events.
type Producer struct {
	api    *apitest.Client
	key    string
	tenant string
	js     jetstream.JetStream
	led    *Ledger
	prefix string
	rate   int
	max    int
	giveUp time.Duration

	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup // the pacing loop and every event in flight
	sent    atomic.Int64
}

func (p *Producer) start() {
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		start := time.Now()
		for i := 0; i < p.max; i++ {
			due := start.Add(time.Duration(i) * time.Second / time.Duration(p.rate))
			select {
			case <-p.stop:
				return
			case <-time.After(time.Until(due)):
			}
			p.wg.Add(1)
			p.sent.Add(1)
			go func() {
				defer p.wg.Done()
				p.send(i, due)
			}()
		}
	}()
}

// Stop ends the pacing; events already due are still sent until accepted.
func (p *Producer) Stop() { p.stopped.Do(func() { close(p.stop) }) }

// Wait waits until every event due was accepted or given up, at most within;
// it reports whether they all finished.
func (p *Producer) Wait(within time.Duration) bool {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(within):
		return false
	}
}

func (p *Producer) send(i int, due time.Time) {
	id := fmt.Sprintf("%s-%06d", p.prefix, i)
	typ := eventTypes[i%len(eventTypes)]
	viaNATS := i%7 == 3
	body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "data": map[string]any{"n": i, "order": id}})
	backoff := 50 * time.Millisecond
	for try := 1; ; try++ {
		var dup bool
		var err error
		if viaNATS {
			dup, err = p.publish(typ, id, body)
		} else {
			dup, err = p.post(body)
		}
		if err == nil {
			p.led.accepted(id, typ, viaNATS, due, time.Now(), try, dup)
			return
		}
		if perm, ok := err.(permanent); ok {
			p.led.refused(id, perm.Error())
			return
		}
		if time.Since(due) > p.giveUp {
			p.led.refused(id, fmt.Sprintf("not accepted after %d tries in %s: %v", try, p.giveUp, err))
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// permanent is an answer retrying will not change (a 4xx): a bug in the
// producer or in Herald, never a fault.
type permanent struct{ error }

func (p *Producer) post(body []byte) (dup bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	status, out, err := p.api.Call(ctx, http.MethodPost, "/v1/events", p.key, body)
	switch {
	case err != nil:
		return false, err
	case status == http.StatusAccepted:
		var acc struct {
			Duplicate bool `json:"duplicate"`
		}
		if err := json.Unmarshal(out, &acc); err != nil {
			return false, permanent{fmt.Errorf("202 with body %q: %v", out, err)}
		}
		return acc.Duplicate, nil
	case status >= 500 || status == http.StatusTooManyRequests:
		return false, fmt.Errorf("status %d: %s", status, out)
	default:
		return false, permanent{fmt.Errorf("status %d: %s", status, out)}
	}
}

func (p *Producer) publish(typ, id string, body []byte) (dup bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ack, err := p.js.Publish(ctx, "herald.events."+p.tenant+"."+typ, body, jetstream.WithMsgID(id))
	if err != nil {
		return false, err
	}
	if ack.Stream != "EVENTS" {
		return false, permanent{fmt.Errorf("stored in stream %q, want EVENTS", ack.Stream)}
	}
	return ack.Duplicate, nil
}
