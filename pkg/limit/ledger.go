package limit

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The health ledger the sender keeps beside the limits: since when an
// endpoint has failed without a single success, so one that fails for days
// can be disabled, and its return reported; in Redis when it answers, in
// process memory otherwise. (Attempt counts are not kept here: they travel
// inside the job message, see package sender.)

const (
	// recoveredAfter is how long a run of failures must have lasted for its
	// end to count as a recovery worth an operational event; a blip is not.
	recoveredAfter = time.Minute
	// healthyRecheck bounds how often a process that saw an endpoint healthy
	// asks Redis again on success: success is the hot path.
	healthyRecheck = 5 * time.Second
)

type ledgers struct {
	mu      sync.Mutex
	failing map[string]time.Time
	healthy map[string]time.Time // endpoint -> when last seen healthy
}

func (l *Limiter) ledger() *ledgers {
	l.ledgerOnce.Do(func() {
		l.ledgers = &ledgers{failing: map[string]time.Time{}, healthy: map[string]time.Time{}}
	})
	return l.ledgers
}

// Failed records a failed attempt to endpoint and returns when its current
// run of failures began.
func (l *Limiter) Failed(ctx context.Context, endpoint string, now time.Time) (time.Time, error) {
	lg := l.ledger()
	lg.mu.Lock()
	delete(lg.healthy, endpoint)
	local, ok := lg.failing[endpoint]
	if !ok {
		local = now
		lg.failing[endpoint] = now
	}
	lg.mu.Unlock()
	if l.shared() {
		rctx, cancel := context.WithTimeout(ctx, redisBudget)
		defer cancel()
		k := l.key(endpoint, "health")
		var since *redis.StringCmd
		_, err := l.rdb.TxPipelined(rctx, func(p redis.Pipeliner) error {
			p.HSetNX(rctx, k, "since", now.UnixMilli())
			p.Expire(rctx, k, 30*24*time.Hour)
			since = p.HGet(rctx, k, "since")
			return nil
		})
		if err == nil {
			l.redisOK()
			if ms, err := since.Int64(); err == nil {
				return time.UnixMilli(ms), nil
			}
		} else {
			l.redisFailed(ctx, err)
		}
	}
	return local, nil
}

// Succeeded ends endpoint's run of failures. recovered is true when the run
// had lasted long enough to be worth reporting.
func (l *Limiter) Succeeded(ctx context.Context, endpoint string) (recovered bool, err error) {
	now := l.now()
	lg := l.ledger()
	lg.mu.Lock()
	local, wasFailing := lg.failing[endpoint]
	delete(lg.failing, endpoint)
	seen, healthy := lg.healthy[endpoint]
	if healthy && !wasFailing && now.Sub(seen) < healthyRecheck {
		lg.mu.Unlock()
		return false, nil
	}
	lg.healthy[endpoint] = now
	lg.mu.Unlock()
	since := time.Time{}
	if wasFailing {
		since = local
	}
	if l.shared() {
		rctx, cancel := context.WithTimeout(ctx, redisBudget)
		defer cancel()
		k := l.key(endpoint, "health")
		var get *redis.StringCmd
		_, err := l.rdb.TxPipelined(rctx, func(p redis.Pipeliner) error {
			get = p.HGet(rctx, k, "since")
			p.Del(rctx, k)
			return nil
		})
		if err == nil || isNil(err) {
			l.redisOK()
			if ms, err := get.Int64(); err == nil {
				since = time.UnixMilli(ms)
			}
		} else {
			l.redisFailed(ctx, err)
		}
	}
	return !since.IsZero() && now.Sub(since) >= recoveredAfter, nil
}

func isNil(err error) bool { return errors.Is(err, redis.Nil) }
