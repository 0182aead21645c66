// This file paces a replay: a replay publishes no faster than its rate, so
// it cannot flood an endpoint that just recovered.

package dlq

import (
	"context"
	"time"
)

// pacer spaces publishes every interval: the first at once, then no faster
// than the rate, so a replay cannot flood an endpoint that just recovered.
type pacer struct {
	every time.Duration
	next  time.Time
}

// newPacer paces rate publishes a second (at least one).
func newPacer(rate int) pacer {
	return pacer{every: time.Second / time.Duration(max(rate, 1))}
}

// wait returns when the next publish may go, or ctx's error if it ends
// first.
func (p *pacer) wait(ctx context.Context) error {
	now := time.Now()
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		now = p.next
	}
	p.next = now.Add(p.every)
	return nil
}
