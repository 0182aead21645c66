package limit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// admitScript is Admit's hot path: breaker, then rate, then concurrency, in
// one round trip. Nothing is written unless every check passes, so a later
// refusal needs no undo. Numbers that may exceed 14 digits are formatted
// with %.0f (Lua would print them in exponent form).
//
// KEYS: breaker hash, rate (GCRA theoretical arrival time, us), leases zset.
// ARGV: now (unix us), rate/s (0 none), burst, cap (0 none), lease TTL (ms),
// lease id, max concurrency wait (ms), max probe wait (ms), key slack (ms),
// outside the breaker (1/0: the breaker is read, for open_until, but
// neither refuses nor makes this request its probe).
// Returns {ok, cause (0 none, 1 breaker, 2 rate, 3 concurrency: the values
// of Cause), wait (us),
// probe, open_until (unix ms, 0 when closed)}.
var admitScript = redis.NewScript(`
local now_us = tonumber(ARGV[1])
local now = math.floor(now_us / 1000)
local ttl = tonumber(ARGV[5])
local slack = tonumber(ARGV[9])
local probe = 0
local b = redis.call('HMGET', KEYS[1], 'open_until', 'probe_until')
local ou = tonumber(b[1])
if ou then
  if ARGV[10] ~= '1' then
    if now < ou then
      return {0, 1, (ou - now) * 1000, 0, ou}
    end
    local pu = tonumber(b[2])
    if pu and now < pu then
      local w = math.min(pu - now, tonumber(ARGV[8]))
      return {0, 1, w * 1000, 0, ou}
    end
    probe = 1
  end
else
  ou = 0
end
local rate = tonumber(ARGV[2])
local new_tat
if rate > 0 then
  local t = 1000000 / rate
  local tat = tonumber(redis.call('GET', KEYS[2])) or now_us
  if tat < now_us then tat = now_us end
  new_tat = tat + t
  local allow_at = new_tat - tonumber(ARGV[3]) * t
  if allow_at > now_us then
    return {0, 2, math.max(1, math.ceil(allow_at - now_us)), 0, ou}
  end
end
local cap = tonumber(ARGV[4])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= cap then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    local w = math.max(1, math.min(tonumber(first[2]) - now, tonumber(ARGV[7])))
    return {0, 3, w * 1000, 0, ou}
  end
  redis.call('ZADD', KEYS[3], string.format('%.0f', now + ttl), ARGV[6])
  if redis.call('PTTL', KEYS[3]) < ttl + slack then
    redis.call('PEXPIRE', KEYS[3], ttl + slack)
  end
end
if new_tat then
  redis.call('SET', KEYS[2], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now_us) / 1000) + slack)
end
if probe == 1 then
  redis.call('HSET', KEYS[1], 'probe', ARGV[6], 'probe_until', string.format('%.0f', now + ttl))
end
return {1, 0, 0, probe, ou}
`)

// recordScript releases a lease and records an outcome in the breaker.
//
// KEYS: leases zset, breaker hash.
// ARGV: lease id, success (1/0), now (unix ms), probe (1/0), failures to
// open (0 = no breaker), base cool-down (ms), max cool-down (ms), breaker
// key TTL (ms), failing-for (ms): how long the run of failures must have
// lasted, besides its count, to open.
// Returns {open_until (unix ms, 0 when closed), transition (0 none, 1
// opened, 2 closed)}.
var recordScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
local threshold = tonumber(ARGV[5])
if threshold <= 0 then return {0, 0} end
local now = tonumber(ARGV[3])
local is_probe = ARGV[4] == '1'
local b = redis.call('HMGET', KEYS[2], 'open_until', 'fails', 'opens', 'probe')
local ou = tonumber(b[1])
if is_probe and b[4] == ARGV[1] then
  redis.call('HDEL', KEYS[2], 'probe', 'probe_until')
end
if ou then
  if not is_probe or now < ou then
    return {ou, 0} -- outcomes of requests admitted before the opening do not count
  end
  if ARGV[2] == '1' then
    redis.call('DEL', KEYS[2])
    return {0, 2}
  end
  local opens = math.min((tonumber(b[3]) or 1) + 1, 64)
  local cd = math.min(tonumber(ARGV[6]) * 2 ^ (opens - 1), tonumber(ARGV[7]))
  ou = now + cd
  redis.call('HSET', KEYS[2], 'open_until', string.format('%.0f', ou), 'opens', opens)
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
  return {ou, 1}
end
if ARGV[2] == '1' then
  if b[2] then redis.call('DEL', KEYS[2]) end
  return {0, 0}
end
local fails = redis.call('HINCRBY', KEYS[2], 'fails', 1)
if fails == 1 then
  redis.call('HSET', KEYS[2], 'fail_since', string.format('%.0f', now))
end
local since = tonumber(redis.call('HGET', KEYS[2], 'fail_since')) or now
if fails >= threshold and now - since >= tonumber(ARGV[9]) then
  ou = now + tonumber(ARGV[6])
  redis.call('HSET', KEYS[2], 'open_until', string.format('%.0f', ou), 'opens', 1)
  redis.call('HDEL', KEYS[2], 'fails', 'fail_since')
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
  return {ou, 1}
end
redis.call('PEXPIRE', KEYS[2], ARGV[8])
return {0, 0}
`)

func (l *Limiter) admitRedis(ctx context.Context, now time.Time, endpoint string, rate int, ttl time.Duration, lease string, outsideBreaker bool) (Verdict, breakerState, error) {
	keys := []string{l.key(endpoint, "breaker"), l.key(endpoint, "rate"), l.key(endpoint, "leases")}
	res, err := admitScript.Run(ctx, l.rdb, keys,
		now.UnixMicro(), rate, burst(rate), max(l.capacity, 0), ttl.Milliseconds(), lease,
		maxConcurrencyWait.Milliseconds(), l.coolDown.Milliseconds(), keySlack.Milliseconds(), b01(outsideBreaker),
	).Int64Slice()
	if err != nil {
		return Verdict{}, breakerState{}, err
	}
	if len(res) != 5 || (res[0] != 1 && (res[1] < int64(Breaker) || res[1] > int64(Concurrency))) {
		return Verdict{}, breakerState{}, fmt.Errorf("limit: unexpected admit reply %v", res)
	}
	st := breakerState{open: res[4] > 0, openUntil: res[4]}
	if res[0] == 1 {
		return Verdict{Allowed: true, Probe: res[3] == 1}, st, nil
	}
	return Verdict{Cause: Cause(res[1]), RetryIn: time.Duration(res[2]) * time.Microsecond}, st, nil
}

func (l *Limiter) recordRedis(ctx context.Context, now time.Time, endpoint, lease string, probe, success bool) (breakerState, error) {
	keys := []string{l.key(endpoint, "leases"), l.key(endpoint, "breaker")}
	failures := max(l.failures, 0)
	res, err := recordScript.Run(ctx, l.rdb, keys,
		lease, b01(success), now.UnixMilli(), b01(probe), failures,
		l.coolDown.Milliseconds(), l.maxCoolDown.Milliseconds(), (breakerKeyTTL + l.maxCoolDown).Milliseconds(),
		l.failingFor.Milliseconds(),
	).Int64Slice()
	if err != nil {
		return breakerState{}, err
	}
	if len(res) != 2 {
		return breakerState{}, fmt.Errorf("limit: unexpected record reply %v", res)
	}
	switch res[1] {
	case 1:
		transitions.WithLabelValues(StateOpen).Inc()
	case 2:
		transitions.WithLabelValues(StateClosed).Inc()
	}
	return breakerState{open: res[0] > 0, openUntil: res[0]}, nil
}

func b01(b bool) int {
	if b {
		return 1
	}
	return 0
}

// breakerState is a breaker as last seen: closed, or open until openUntil
// (unix ms) and half-open after.
type breakerState struct {
	open      bool
	openUntil int64
}

func (s breakerState) name(now time.Time) string {
	switch {
	case !s.open:
		return StateClosed
	case now.UnixMilli() < s.openUntil:
		return StateOpen
	default:
		return StateHalfOpen
	}
}
