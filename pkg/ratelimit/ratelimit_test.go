package ratelimit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/ratelimit"
)

// clock is a settable clock shared by limiters, so tests move time
// instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func client(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// admitted counts how many of n calls are admitted, and returns the wait of
// the last refusal.
func admitted(t *testing.T, l *ratelimit.Limiter, key string, n int) (int, time.Duration) {
	t.Helper()
	ok, wait := 0, time.Duration(0)
	for range n {
		if a, w := l.Allow(context.Background(), key); a {
			ok++
		} else {
			wait = w
		}
	}
	return ok, wait
}

func TestSharedAcrossReplicas(t *testing.T) {
	url, prefix := testenv.Redis(t)
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	a := ratelimit.New(client(t, url), prefix, 10, 5, ratelimit.WithClock(c.now))
	b := ratelimit.New(client(t, url), prefix, 10, 5, ratelimit.WithClock(c.now))

	n1, _ := admitted(t, a, "tn_a", 3)
	n2, wait := admitted(t, b, "tn_a", 5)
	if n1+n2 != 5 {
		t.Fatalf("two replicas admitted %d+%d, want 5 in all (the burst)", n1, n2)
	}
	if wait < 90*time.Millisecond || wait > 100*time.Millisecond {
		t.Fatalf("wait %v, want about one interval (100ms)", wait)
	}
	if n, _ := admitted(t, a, "tn_b", 5); n != 5 {
		t.Fatalf("another key admitted %d of 5: keys must not share a bucket", n)
	}
	c.add(100 * time.Millisecond)
	if n, _ := admitted(t, b, "tn_a", 3); n != 1 {
		t.Fatalf("after one interval %d admitted, want 1", n)
	}
	c.add(time.Second)
	if n, _ := admitted(t, a, "tn_a", 10); n != 5 {
		t.Fatalf("after a full refill %d admitted, want the burst 5", n)
	}
}

func TestUnlimitedAndDefaults(t *testing.T) {
	l := ratelimit.New(nil, "", 0, 0)
	if n, _ := admitted(t, l, "k", 10_000); n != 10_000 {
		t.Fatalf("rate 0 admitted %d of 10000", n)
	}
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l = ratelimit.New(nil, "", 100, 0, ratelimit.WithClock(c.now))
	if l.Burst() != 100 {
		t.Fatalf("default burst %d, want the rate (one second's worth)", l.Burst())
	}
	if n, wait := admitted(t, l, "k", 150); n != 100 || wait <= 0 || wait > 10*time.Millisecond {
		t.Fatalf("per-process: %d admitted, wait %v; want 100 and about 10ms", n, wait)
	}
}

// Without Redis each process limits alone; when Redis is back the limit is
// shared again.
func TestRedisDownFallsBackPerProcess(t *testing.T) {
	p := testenv.RedisProcess(t)
	rdb := client(t, p.URL())
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(rdb, "rl:", 10, 3, ratelimit.WithClock(c.now), ratelimit.WithLogger(testenv.Logger(t)))
	if n, _ := admitted(t, l, "k", 5); n != 3 {
		t.Fatalf("with Redis %d admitted, want 3", n)
	}
	p.Stop()
	// The local bucket is fresh: a burst, then refusals, without Redis.
	start := time.Now()
	if n, wait := admitted(t, l, "k", 5); n != 3 || wait <= 0 {
		t.Fatalf("with Redis down %d admitted (wait %v), want 3 then refusals", n, wait)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("5 decisions took %v with Redis down: it must not be asked on every call", d)
	}
	p.Start()
	testenv.Eventually(t, 5*time.Second, func() bool { return rdb.Ping(context.Background()).Err() == nil }, "redis back")
	c.add(2 * time.Second) // past the recheck delay; the buckets refill
	if n, _ := admitted(t, l, "k", 5); n != 3 {
		t.Fatalf("after Redis returned %d admitted, want 3", n)
	}
	if v, err := rdb.Get(context.Background(), "rl:ratelimit:{k}").Result(); err != nil || v == "" {
		t.Fatalf("decisions do not go through Redis again: %q, %v", v, err)
	}
}
