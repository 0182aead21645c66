package service

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/ratelimit"
)

// testLimiter adapts limit.Limiter to the API's EndpointLimiter: test sends
// obey each endpoint's rate limit and cap, shared with its deliveries
// through Redis, outside its breaker (limit.Limiter.AdmitOutsideBreaker
// says why).
type testLimiter struct{ *limit.Limiter }

func (l testLimiter) Admit(ctx context.Context, endpoint string, rate int, ttl time.Duration) api.Admission {
	p, v := l.AdmitOutsideBreaker(ctx, endpoint, rate, ttl)
	if p == nil {
		return api.Admission{Wait: v.RetryIn, Reason: v.Cause.String()}
	}
	// Done bounds its own Redis call, and must run even when the test's
	// client has gone.
	return api.Admission{OK: true, Release: func() { p.Done(context.Background(), true) }}
}

// endpointLimits is the process's one limiter of endpoints' caps, rates
// and breakers: the sender's deliveries and the API's test sends share it,
// so that in one process they share each endpoint's slots and rate even
// without Redis (with Redis, every process shares them).
func endpointLimits(cfg Config, rdb *redis.Client, log zerolog.Logger) *limit.Limiter {
	var r redis.UniversalClient
	if rdb != nil {
		r = rdb
	}
	return limit.New(r, cfg.RedisPrefix, limit.WithConcurrency(cfg.EndpointConcurrency),
		limit.WithBreaker(cfg.BreakerFailures, cfg.BreakerCoolDown, 10*time.Minute),
		limit.WithBreakerFailingFor(cfg.BreakerFailingFor),
		limit.WithLogger(log.With().Str("component", "limit").Logger()))
}

// testSendLimits are the limits of the API's test sends: each endpoint's,
// through the limiter the senders use (endpointLimits), and the tenant's
// test-send rate.
func testSendLimits(cfg Config, rdb *redis.Client, lim *limit.Limiter, log zerolog.Logger) []api.Option {
	var r redis.UniversalClient
	if rdb != nil {
		r = rdb
	}
	// Keys of their own: ratelimit's keys are prefix+"ratelimit:{tenant}",
	// which the event rate uses.
	tenants := ratelimit.New(r, cfg.RedisPrefix+"test-sends:", cfg.TenantTestSendsPerSecond, cfg.TenantTestSendsBurst,
		ratelimit.WithLogger(log.With().Str("component", "ratelimit").Logger()))
	return []api.Option{api.WithLimiter(testLimiter{lim}), api.WithTestSendRateLimit(tenants)}
}
