package limit

import (
	"context"
	"testing"
	"time"
)

func TestLedgers(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := newRedis(t)
	for _, mode := range []struct {
		name string
		new  func(c *clock) *Limiter
	}{
		{"redis", func(c *clock) *Limiter {
			return New(rdb, prefix+c.Now().Format("150405.000000000")+":", WithClock(c.Now))
		}},
		{"local", func(c *clock) *Limiter { return New(nil, "", WithClock(c.Now)) }},
	} {
		t.Run(mode.name+"/health", func(t *testing.T) {
			c := newClock()
			l := mode.new(c)
			start := c.Now()
			since, _ := l.Failed(ctx, "ep", c.Now())
			c.Add(time.Hour)
			since2, _ := l.Failed(ctx, "ep", c.Now())
			if since.Sub(start).Abs() > time.Millisecond || !since2.Equal(since) {
				t.Fatalf("failing since = %v then %v, want both %v", since, since2, start)
			}
			if rec, _ := l.Succeeded(ctx, "ep"); !rec {
				t.Fatal("a success after an hour of failures is not a recovery")
			}
			// A new run starts fresh; a blip is no recovery.
			since3, _ := l.Failed(ctx, "ep", c.Now())
			if !since3.After(since) {
				t.Fatalf("new failing run since %v, want after %v", since3, since)
			}
			c.Add(time.Second)
			if rec, _ := l.Succeeded(ctx, "ep"); rec {
				t.Fatal("a one-second blip reported as a recovery")
			}
		})
	}
	// Shared: a run of failures seen by one replica is known to another.
	t.Run("shared across replicas", func(t *testing.T) {
		c := newClock()
		p := prefix + "shared:"
		a, b := New(rdb, p, WithClock(c.Now)), New(rdb, p, WithClock(c.Now))
		since, _ := a.Failed(ctx, "ep", c.Now())
		c.Add(10 * time.Minute)
		got, _ := b.Failed(ctx, "ep", c.Now())
		if !got.Equal(since) {
			t.Fatalf("replica b sees failing since %v, want %v", got, since)
		}
		if rec, _ := b.Succeeded(ctx, "ep"); !rec {
			t.Fatal("replica b saw no recovery")
		}
	})
}
