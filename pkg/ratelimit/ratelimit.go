// Package ratelimit is a token bucket per key (a tenant, for the API's event
// intake) shared by every replica through Redis: one GCRA script, one round
// trip per decision. While Redis is unavailable each process decides alone
// with the same rule, in memory, so R replicas admit up to R times the rate
// until Redis answers again; intake never stops because Redis did.
//
// GCRA keeps one number per key, the theoretical arrival time (TAT): each
// admitted request pushes it one interval (1/rate) further; a request is
// admitted while the TAT stays within burst intervals of now. That is a
// token bucket of size burst refilled at rate per second, without a timer.
// Times come from the Limiter's clock, passed to the script, never from
// Redis.
package ratelimit

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

var refused = promauto.NewCounter(prometheus.CounterOpts{
	Name: "herald_tenant_rate_limited_total",
	Help: "Requests refused with 429 because their tenant was over its rate limit.",
})

// script is the GCRA step. KEYS[1]: the TAT (unix us). ARGV: now (unix
// us), interval (us, may be fractional), burst. Returns {1, 0} when
// admitted, {0, wait in us} otherwise. Numbers are formatted with %.0f:
// Lua would print large ones in exponent form.
var script = redis.NewScript(`
local now = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + t
local allow_at = new_tat - burst * t
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0}
`)

// redisBudget bounds one decision's Redis call; past it the decision is
// made locally and Redis counts as down for recheck.
const (
	redisBudget = 250 * time.Millisecond
	recheck     = time.Second
)

// Limiter admits at most rate requests per second per key, with bursts of
// up to burst. It is safe for concurrent use.
type Limiter struct {
	rdb      redis.UniversalClient
	prefix   string
	rate     int
	burst    int
	interval float64 // us
	now      func() time.Time
	log      zerolog.Logger

	downUntil atomic.Int64 // unix ns; Redis is not tried before
	down      atomic.Bool

	mu        sync.Mutex
	local     map[string]time.Time // key -> TAT
	lastSweep time.Time
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// WithLogger sets the logger.
func WithLogger(lg zerolog.Logger) Option { return func(l *Limiter) { l.log = lg } }

// New returns a Limiter of rate requests per second per key (<= 0: no
// limit; Allow always admits) with bursts of burst (<= 0: rate, one
// second's worth). rdb may be nil: each process then limits alone. Keys in
// Redis are prefix+"ratelimit:{<key>}".
func New(rdb redis.UniversalClient, prefix string, rate, burst int, opts ...Option) *Limiter {
	if burst <= 0 {
		burst = rate
	}
	l := &Limiter{rdb: rdb, prefix: prefix, rate: rate, burst: max(burst, 1), now: time.Now, log: zerolog.Nop(), local: map[string]time.Time{}}
	if rate > 0 {
		l.interval = 1e6 / float64(rate)
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Rate is the limit in requests per second (0: none); Burst the bucket size.
func (l *Limiter) Rate() int  { return max(l.rate, 0) }
func (l *Limiter) Burst() int { return l.burst }

// Allow takes one token from key's bucket. When none is left it answers
// false and how long until one is.
func (l *Limiter) Allow(ctx context.Context, key string) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	now := l.now()
	if l.rdb != nil && now.UnixNano() >= l.downUntil.Load() {
		rctx, cancel := context.WithTimeout(ctx, redisBudget)
		res, err := script.Run(rctx, l.rdb, []string{l.prefix + "ratelimit:{" + key + "}"},
			now.UnixMicro(), l.interval, l.burst).Int64Slice()
		cancel()
		if err == nil && len(res) == 2 {
			if l.down.CompareAndSwap(true, false) {
				l.log.Info().Msg("redis is back: tenant rate limits are shared across replicas again")
			}
			return l.result(res[0] == 1, time.Duration(res[1])*time.Microsecond)
		}
		if ctx.Err() == nil {
			l.downUntil.Store(now.Add(recheck).UnixNano())
			if l.down.CompareAndSwap(false, true) {
				l.log.Warn().Err(err).Msg("redis unavailable: tenant rate limits are enforced per process until it returns")
			}
		}
	}
	return l.result(l.allowLocal(now, key))
}

func (l *Limiter) result(ok bool, wait time.Duration) (bool, time.Duration) {
	if !ok {
		refused.Inc()
	}
	return ok, wait
}

// allowLocal is the script's rule on this process's memory.
func (l *Limiter) allowLocal(now time.Time, key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		for k, tat := range l.local {
			if tat.Before(now) {
				delete(l.local, k)
			}
		}
		l.lastSweep = now
	}
	t := time.Duration(math.Round(l.interval * float64(time.Microsecond)))
	tat := l.local[key]
	if tat.Before(now) {
		tat = now
	}
	newTAT := tat.Add(t)
	if allowAt := newTAT.Add(-time.Duration(l.burst) * t); allowAt.After(now) {
		return false, allowAt.Sub(now)
	}
	l.local[key] = newTAT
	return true, 0
}
