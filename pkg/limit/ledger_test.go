package limit

import (
	"context"
	"errors"
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
		t.Run(mode.name+"/skips", func(t *testing.T) {
			l := mode.new(newClock())
			if mode.name == "local" {
				// A count one process keeps would be wrong on another.
				if err := l.Skip(ctx, "42"); !errors.Is(err, ErrNotShared) {
					t.Fatalf("local Skip = %v, want ErrNotShared", err)
				}
				if n, _ := l.Skips(ctx, "42"); n != 0 {
					t.Fatalf("local skips = %d, want 0", n)
				}
				return
			}
			if n, _ := l.Skips(ctx, "42"); n != 0 {
				t.Fatalf("skips before any = %d", n)
			}
			for range 3 {
				if err := l.Skip(ctx, "42"); err != nil {
					t.Fatal(err)
				}
			}
			if n, _ := l.Skips(ctx, "42"); n != 3 {
				t.Fatalf("skips = %d, want 3", n)
			}
			if n, _ := l.Skips(ctx, "43"); n != 0 {
				t.Fatalf("another job's skips = %d, want 0", n)
			}
		})
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
		if err := a.Skip(ctx, "7"); err != nil {
			t.Fatal(err)
		}
		if n, _ := b.Skips(ctx, "7"); n != 1 {
			t.Fatalf("replica b sees %d skips, want 1", n)
		}
	})
}
