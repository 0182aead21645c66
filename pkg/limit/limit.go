// Package limit isolates endpoints from each other: a slow, failing or
// rate-limited endpoint must not take every sender worker with it. For each
// endpoint, shared by every sender replica through Redis, it enforces
//
//   - a concurrency cap: at most N requests in flight (default 10). A slot is
//     a lease in a sorted set (member = lease id, score = expiry in unix ms);
//     a lease expires after the TTL given to Admit (request timeout + margin),
//     so a sender that dies holding slots frees them by itself;
//   - a rate limit in requests per second (0 = none), as GCRA: one key per
//     endpoint holding the theoretical arrival time, with a burst of a tenth
//     of a second's worth of requests (at least 1);
//   - a circuit breaker: after N consecutive failures (default 5) that span
//     at least a minimum time without a success (default 10 s) the breaker
//     opens for a cool-down (default 30 s, doubling on each failed probe up
//     to 10 min). While open, Admit refuses without any HTTP request. After
//     the cool-down exactly one request, across all replicas, is let through
//     as a probe (half-open); its success closes the breaker and resets the
//     cool-down, its failure re-opens it. The probe token is a pair of fields
//     in the breaker hash (lease id, expiry) set by the admit script, whose
//     atomicity does what SET NX PX would, on the Limiter's clock. A probe
//     whose sender dies is given up after its lease TTL; then another probes.
//
// Admit never waits for other requests: it grants a Permit or reports a
// Verdict of facts (which limit refused, and when asking again may succeed);
// what to do with a refusal is the caller's to decide (the sender puts the
// job back into JetStream instead of holding a worker). The breaker, rate
// and concurrency checks run in that order in one Lua script (one Redis
// round trip); a later refusal leaves no trace of an earlier grant (no rate
// token is spent, no slot or probe is taken). Permit.Done releases the slot
// and records the outcome in the breaker (a second script).
// Permit.Handover passes a slot from a request that ended to the next one
// of the same process: in one script (release, record, grant), or, for a
// success within a second of Redis granting the slot, while the breaker
// held nothing and without a rate limit, with no round trip at all (the
// slot stays under the lease Redis granted; see permit.keeps). A busy
// endpoint thus costs Redis a call per slot and second instead of one per
// request, and the breaker hears of successes at least once a second per
// slot, well within the run of failures (DefaultFailingFor) that opens it.
//
// All times come from the Limiter's clock (WithClock), passed to the
// scripts, never from Redis: replicas' clocks should be NTP-synchronised, and
// their skew shifts lease expiry and the rate's spacing by as much. Redis key
// TTLs only collect the garbage of idle endpoints and are generous.
//
// Keys are prefix+"limit:{<endpoint>}:breaker|rate|leases|wanting"; the hash tag keeps
// one endpoint's keys in one Redis Cluster slot. prefix must not contain '{'.
//
// # Degraded mode
//
// Limits must never stop delivery. Without Redis (rdb nil), or while it does
// not answer, every process enforces the same limits alone, in memory: a
// local lease set with the same cap (so R replicas may together have up to
// R x cap requests in flight to one endpoint), a local GCRA (up to R x rate)
// and a local breaker fed by this process's outcomes. A Redis call that fails
// or takes over 500 ms to dial, retry or get a connection is decided locally.
// The first failure of an outage is logged once (warn) and
// herald_limit_redis_up drops to 0; calls then no longer touch Redis, but at
// most once a second one of them starts a background PING, and when one
// answers the Limiter logs it (info) and shares limits through Redis again. Slots granted locally during the outage are
// unknown to Redis, so for up to one lease TTL after the return an endpoint
// may see up to 2 x cap requests from a replica. Permits keep the mode they
// were granted in: a local permit releases its local slot, a Redis permit
// whose Done fails leaves its lease to expire and feeds the local breaker.
//
// # Metrics
//
// herald_limit_delayed_total{reason} counts refusals by Cause;
// herald_breaker_transitions_total{to} counts the transitions this process
// made (summed over replicas, each transition once); herald_breaker_state{state}
// is the number of endpoints this process last saw open or half_open.
package limit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Cause is which of an endpoint's limits refused a request.
type Cause uint8

// The causes of a refusal, in the order Admit checks them. Their values are
// the admit script's reply codes.
const (
	// Breaker: the endpoint's breaker is open, or its half-open probe is
	// in flight.
	Breaker Cause = iota + 1
	// Rate: the endpoint's rate limit has no request to spare now.
	Rate
	// Concurrency: the endpoint's cap of requests in flight is reached.
	Concurrency
)

var causeNames = [...]string{Breaker: "breaker", Rate: "rate", Concurrency: "concurrency"}

// String is the cause's name as metrics label it (reason="breaker", "rate"
// or "concurrency"); "none" for the zero Cause of an allowed request.
func (c Cause) String() string {
	if c == 0 {
		return "none"
	}
	if int(c) < len(causeNames) {
		return causeNames[c]
	}
	return "cause(" + strconv.Itoa(int(c)) + ")"
}

// Breaker states, as State returns them.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half_open"
)

// Defaults.
const (
	DefaultConcurrency = 10
	DefaultFailures    = 5
	// DefaultFailingFor is how long an endpoint must fail without a
	// success before its breaker opens. A count alone trips on endpoints
	// that fail often but not always: at volume, five failures in a row
	// come soon at a 50 % failure rate, and a receiver that fails each
	// event's first attempt but takes its retry (due 5 s later by default)
	// never ends a run of failures before the retries arrive.
	DefaultFailingFor  = 10 * time.Second
	DefaultCoolDown    = 30 * time.Second
	DefaultMaxCoolDown = 10 * time.Minute
	// DefaultLeaseTTL is used when Admit is given no lease TTL.
	DefaultLeaseTTL = time.Minute
	// maxConcurrencyWait bounds the retry hint when the cap is reached: a
	// slot frees when some request ends, which the limiter cannot foresee.
	maxConcurrencyWait = time.Second
	// breakerKeyTTL keeps a breaker's counts this long after its last write
	// (plus the maximum cool-down).
	breakerKeyTTL = 24 * time.Hour
	// keySlack is added to the TTL of rate and lease keys: the scripts
	// decide by the scores and values, the TTL only removes idle keys.
	keySlack = time.Minute
	// redisBudget bounds a call's dials, retries and pool waits (go-redis
	// honours the context there): past it the call is decided locally and
	// Redis counts as down. Socket reads and writes are bounded by the
	// client's own ReadTimeout and WriteTimeout.
	redisBudget = 500 * time.Millisecond
)

// Verdict is what Admit found: facts about the endpoint's limits at that
// moment, not what to do about them. Whether a refused request waits,
// where, and for how long is the caller's decision.
type Verdict struct {
	// Allowed: send the request now, and call Permit.Done after it.
	Allowed bool
	// RetryIn is how soon asking again may be allowed (when !Allowed): the
	// rest of the breaker's cool-down (or of its probe's lease, at most a
	// cool-down), the rate limit's next free request, or for the cap the
	// first lease's expiry, at most a second (the limiter cannot foresee
	// when a request ends).
	RetryIn time.Duration
	// Cause is the limit that refused (when !Allowed).
	Cause Cause
	// Probe: this request is the half-open breaker's single probe; its
	// outcome closes or re-opens the breaker.
	Probe bool
}

// Permit is a granted request. Done releases its concurrency slot and
// records the outcome in the endpoint's breaker; call it exactly once, after
// the attempt (later calls do nothing). Give it a context that is not
// cancelled by shutdown, or the slot is only freed when its lease expires.
type Permit interface {
	Done(ctx context.Context, success bool)
	// Handover is Done followed by Admit for another request to the same
	// endpoint: the slot passes from one request to the next. With Redis
	// it is one round trip instead of two, and atomic, so no other replica
	// takes the slot in between (an order Done then Admit could have run
	// in too), unless this replica holds its share of the cap while
	// another was refused a slot within the last second: then the slot is
	// released and the next request refused by the cap, so that a replica
	// with a backlog does not keep the endpoint's slots from the others.
	// A success may instead keep the slot without asking Redis, for a
	// second after Redis granted it (see the package documentation): the
	// share then holds from the next handover that asks.
	// The caller gets the next request's Permit, or the Verdict that
	// refused it (this outcome may also have opened the breaker).
	Handover(ctx context.Context, success bool, rateLimit int, leaseTTL time.Duration) (Permit, Verdict)
}

// Limiter enforces per-endpoint limits. It is safe for concurrent use.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	log    zerolog.Logger
	now    func() time.Time

	capacity    int
	failures    int
	failingFor  time.Duration
	coolDown    time.Duration
	maxCoolDown time.Duration

	id  string // lease id prefix, unique to this Limiter
	seq atomic.Uint64

	down atomic.Bool
	// outages counts the times Redis was found unusable: while it is, the
	// cap holds per process only (tests read it to know which bound applies).
	outages      atomic.Int64
	nextCheck    atomic.Int64 // unix ns of the next PING while down
	pinging      atomic.Bool
	recheckEvery time.Duration

	mu        sync.Mutex
	local     map[string]*localEP
	lastSweep time.Time

	ledgerOnce sync.Once
	ledgers    *ledgers
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithLogger sets the logger.
func WithLogger(lg zerolog.Logger) Option { return func(l *Limiter) { l.log = lg } }

// WithConcurrency sets the per-endpoint cap of requests in flight across all
// replicas (default 10). n <= 0 means no cap.
func WithConcurrency(n int) Option { return func(l *Limiter) { l.capacity = n } }

// WithBreaker sets how many consecutive failures open an endpoint's breaker
// (default 5; <= 0 disables it), the first cool-down (default 30 s) and the
// longest one it doubles up to (default 10 min).
func WithBreaker(failures int, coolDown, maxCoolDown time.Duration) Option {
	return func(l *Limiter) {
		l.failures = failures
		if coolDown > 0 {
			l.coolDown = coolDown
		}
		if maxCoolDown > 0 {
			l.maxCoolDown = maxCoolDown
		}
	}
}

// WithBreakerFailingFor sets how long a run of failures must last, besides
// its count, before the breaker opens (default DefaultFailingFor; 0: the
// count alone decides).
func WithBreakerFailingFor(d time.Duration) Option {
	return func(l *Limiter) { l.failingFor = max(d, 0) }
}

// WithClock replaces time.Now for every decision (tests move time with it).
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// New returns a Limiter sharing its state through rdb under keys starting
// with prefix. rdb may be nil: limits are then enforced in this process only.
func New(rdb redis.UniversalClient, prefix string, opts ...Option) *Limiter {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	l := &Limiter{
		rdb: rdb, prefix: prefix, log: zerolog.Nop(), now: time.Now,
		capacity: DefaultConcurrency, failures: DefaultFailures, failingFor: DefaultFailingFor,
		coolDown: DefaultCoolDown, maxCoolDown: DefaultMaxCoolDown,
		id: hex.EncodeToString(b) + ":", recheckEvery: time.Second,
		local: map[string]*localEP{},
	}
	for _, o := range opts {
		o(l)
	}
	if l.maxCoolDown < l.coolDown {
		l.maxCoolDown = l.coolDown
	}
	if rdb != nil {
		redisUp.Set(1)
	} else {
		redisUp.Set(0)
	}
	return l
}

// Admit asks to send one request to endpoint now. It never blocks on other
// requests: it answers at once (after one Redis round trip) with a Permit
// and an allowed Verdict, or with a nil Permit and a Verdict saying which
// limit refused and how soon asking again may succeed. rateLimit is the
// endpoint's requests per second (0 = none); leaseTTL is how long the slot
// is held if Done is never called (the request timeout plus a margin;
// DefaultLeaseTTL if <= 0), and also how long a probe may take.
func (l *Limiter) Admit(ctx context.Context, endpoint string, rateLimit int, leaseTTL time.Duration) (Permit, Verdict) {
	return l.admit(ctx, endpoint, rateLimit, leaseTTL, false)
}

// AdmitOutsideBreaker is Admit under the endpoint's rate limit and
// concurrency cap only: the breaker neither refuses the request nor hears
// of its outcome (its permit's Done only frees the slot). For requests a
// person asks for, such as an endpoint's test send: testing a fixed
// endpoint while its breaker is open is how one finds it fixed, and a
// test's outcome says nothing about the deliveries the breaker protects.
func (l *Limiter) AdmitOutsideBreaker(ctx context.Context, endpoint string, rateLimit int, leaseTTL time.Duration) (Permit, Verdict) {
	return l.admit(ctx, endpoint, rateLimit, leaseTTL, true)
}

func (l *Limiter) admit(ctx context.Context, endpoint string, rateLimit int, leaseTTL time.Duration, outsideBreaker bool) (Permit, Verdict) {
	rateLimit, leaseTTL = request(rateLimit, leaseTTL)
	lease := l.lease()
	now := l.now()
	if l.shared() {
		rctx, cancel := context.WithTimeout(ctx, redisBudget)
		v, st, err := l.admitRedis(rctx, now, endpoint, rateLimit, leaseTTL, lease, outsideBreaker)
		cancel()
		if err == nil {
			l.redisOK()
			track(l, endpoint, st)
			return l.finish(&permit{l: l, endpoint: endpoint, lease: lease, probe: v.Probe, shared: true, outsideBreaker: outsideBreaker,
				granted: now, ttl: leaseTTL, clean: st.clean}, v)
		}
		l.redisFailed(ctx, err)
	}
	v := l.admitLocal(now, endpoint, rateLimit, leaseTTL, lease, outsideBreaker)
	return l.finish(&permit{l: l, endpoint: endpoint, lease: lease, probe: v.Probe, outsideBreaker: outsideBreaker}, v)
}

// request reads a request's limits, the defaults where unset.
func request(rateLimit int, leaseTTL time.Duration) (rate int, ttl time.Duration) {
	if leaseTTL <= 0 {
		leaseTTL = DefaultLeaseTTL
	}
	return max(rateLimit, 0), leaseTTL
}

// lease names a new lease, unique to this Limiter.
func (l *Limiter) lease() string { return l.id + strconv.FormatUint(l.seq.Add(1), 36) }

func (l *Limiter) finish(p *permit, v Verdict) (Permit, Verdict) {
	if !v.Allowed {
		delayed.WithLabelValues(v.Cause.String()).Inc()
		return nil, v
	}
	if v.Probe {
		transitions.WithLabelValues(StateHalfOpen).Inc()
	}
	return p, v
}

// State is the endpoint's breaker state: StateClosed, StateOpen or
// StateHalfOpen (the cool-down is over: a probe may go, or is in flight).
// While Redis is unavailable it is this process's local breaker's state.
func (l *Limiter) State(ctx context.Context, endpoint string) string {
	now := l.now()
	if l.shared() {
		rctx, cancel := context.WithTimeout(ctx, redisBudget)
		v, err := l.rdb.HGet(rctx, l.key(endpoint, "breaker"), "open_until").Result()
		cancel()
		if err == nil || errors.Is(err, redis.Nil) {
			l.redisOK()
			ou, _ := strconv.ParseInt(v, 10, 64)
			st := breakerState{open: ou > 0, openUntil: ou}
			track(l, endpoint, st)
			return st.name(now)
		}
		l.redisFailed(ctx, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.local[endpoint]; e != nil && !e.openUntil.IsZero() {
		if now.Before(e.openUntil) {
			return StateOpen
		}
		return StateHalfOpen
	}
	return StateClosed
}

type permit struct {
	l              *Limiter
	endpoint       string
	lease          string
	probe          bool
	shared         bool
	outsideBreaker bool
	done           atomic.Bool
	// A Redis permit's lease: when Redis granted it, for how long, and
	// whether the endpoint's breaker held nothing then (see keeps).
	granted time.Time
	ttl     time.Duration
	clean   bool
}

// keepFor is how long after Redis granted a slot a request that ends may
// pass it to the next request of this process without asking Redis (see
// permit.keeps); a quarter of the lease's TTL when that is shorter, so the
// lease always outlives the next request by most of its margin.
const keepFor = time.Second

// keeps reports whether the slot of p, whose request ended with success,
// can pass to a next request of this process with rateLimit and leaseTTL
// without a Redis round trip: the lease Redis granted (at most keepFor
// ago) still covers the next request, there is no rate limit to spend, and
// the breaker held nothing when Redis last answered, so the success has
// nothing to reset. Every other handover asks Redis, which also decides
// each replica's share of the cap: a slot may thus stay with one replica
// for up to keepFor while another wants it.
func (p *permit) keeps(now time.Time, success bool, rateLimit int, leaseTTL time.Duration) bool {
	return success && rateLimit == 0 && p.shared && p.clean && !p.probe && !p.outsideBreaker &&
		leaseTTL <= p.ttl && now.Sub(p.granted) <= min(keepFor, p.ttl/4) && p.l.shared()
}

func (p *permit) Done(ctx context.Context, success bool) {
	if !p.done.CompareAndSwap(false, true) {
		return
	}
	l := p.l
	now := l.now()
	if p.outsideBreaker {
		p.release(ctx)
		return
	}
	if p.shared {
		if l.shared() {
			rctx, cancel := context.WithTimeout(ctx, redisBudget)
			st, err := l.recordRedis(rctx, now, p.endpoint, p.lease, p.probe, success)
			cancel()
			if err == nil {
				l.redisOK()
				track(l, p.endpoint, st)
				return
			}
			l.redisFailed(ctx, err)
		}
		// The Redis lease (and probe) expire by themselves; this process's
		// breaker learns the outcome.
		l.recordLocal(now, p.endpoint, "", false, success)
		return
	}
	l.recordLocal(now, p.endpoint, p.lease, p.probe, success)
}

func (p *permit) Handover(ctx context.Context, success bool, rateLimit int, leaseTTL time.Duration) (Permit, Verdict) {
	l := p.l
	rateLimit, leaseTTL = request(rateLimit, leaseTTL)
	now := l.now()
	if p.keeps(now, success, rateLimit, leaseTTL) && p.done.CompareAndSwap(false, true) {
		kept.Inc()
		return &permit{l: l, endpoint: p.endpoint, lease: p.lease, shared: true, granted: p.granted, ttl: p.ttl, clean: true}, Verdict{Allowed: true}
	}
	if !p.shared || p.outsideBreaker || !l.shared() || !p.done.CompareAndSwap(false, true) {
		p.Done(ctx, success)
		return l.Admit(ctx, p.endpoint, rateLimit, leaseTTL)
	}
	next := l.lease()
	rctx, cancel := context.WithTimeout(ctx, redisBudget)
	v, st, err := l.handoverRedis(rctx, now, p.endpoint, p.lease, p.probe, success, rateLimit, leaseTTL, next)
	cancel()
	if err != nil {
		// As Done and Admit do when Redis fails: the lease expires by
		// itself, this process's breaker learns the outcome, and the next
		// request is admitted by this process alone.
		l.redisFailed(ctx, err)
		l.recordLocal(now, p.endpoint, "", false, success)
		return l.Admit(ctx, p.endpoint, rateLimit, leaseTTL)
	}
	l.redisOK()
	track(l, p.endpoint, st)
	return l.finish(&permit{l: l, endpoint: p.endpoint, lease: next, probe: v.Probe, shared: true,
		granted: now, ttl: leaseTTL, clean: st.clean}, v)
}

// release frees the permit's slot without recording an outcome. A Redis
// lease that cannot be removed expires by itself.
func (p *permit) release(ctx context.Context) {
	l := p.l
	if !p.shared {
		l.releaseLocal(p.endpoint, p.lease)
		return
	}
	if !l.shared() {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, redisBudget)
	err := l.rdb.ZRem(rctx, l.key(p.endpoint, "leases"), p.lease).Err()
	cancel()
	if err != nil {
		l.redisFailed(ctx, err)
		return
	}
	l.redisOK()
}

// shared reports whether decisions go through Redis now. While Redis is
// down it also schedules a background PING.
func (l *Limiter) shared() bool {
	if l.rdb == nil {
		return false
	}
	if !l.down.Load() {
		return true
	}
	l.recheck()
	return false
}

func (l *Limiter) redisFailed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // the caller gave up (ctx is the caller's, not the budget's)
	}
	l.nextCheck.Store(time.Now().Add(l.recheckEvery).UnixNano())
	if l.down.CompareAndSwap(false, true) {
		l.outages.Add(1)
		redisUp.Set(0)
		l.log.Warn().Err(err).Msg("redis unavailable; endpoint limits are enforced per process until it returns")
	}
}

func (l *Limiter) redisOK() {
	if l.down.CompareAndSwap(true, false) {
		redisUp.Set(1)
		l.log.Info().Msg("redis is back; endpoint limits are shared again")
	}
}

// recheck PINGs Redis in the background at most once per recheckEvery while
// it is down, so that no Admit waits for a dead Redis.
func (l *Limiter) recheck() {
	next := l.nextCheck.Load()
	now := time.Now().UnixNano()
	if now < next || !l.nextCheck.CompareAndSwap(next, now+int64(l.recheckEvery)) {
		return
	}
	if !l.pinging.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer l.pinging.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if l.rdb.Ping(ctx).Err() == nil {
			l.redisOK()
		}
	}()
}

func (l *Limiter) key(endpoint, what string) string {
	return l.prefix + "limit:{" + endpoint + "}:" + what
}

// burst is how many requests GCRA lets through at once: a tenth of a
// second's worth, at least one.
func burst(rate int) int { return max(1, (rate+9)/10) }

// coolDownAfter is the cool-down after the n-th consecutive opening.
func (l *Limiter) coolDownAfter(opens int) time.Duration {
	d := l.coolDown
	for i := 1; i < opens && d < l.maxCoolDown; i++ {
		d *= 2
	}
	return min(d, l.maxCoolDown)
}
