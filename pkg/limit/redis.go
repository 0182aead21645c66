package limit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// admitLua and recordLua are the limiter's two operations as Lua functions
// of (KEYS, ARGV) tables, so that handoverScript can run both in one call.
//
// admitLua is Admit's hot path: breaker, then rate, then concurrency, in
// one round trip. Nothing is written unless every check passes (but for the
// wanting mark of a cap refusal, below), so a later refusal needs no undo. Numbers that may exceed 14 digits are formatted
// with %.0f (Lua would print them in exponent form).
//
// KEYS (K): breaker hash, rate (GCRA theoretical arrival time, us), leases
// zset, wanting zset (replica id -> unix ms it was last refused by the cap).
// ARGV (A): now (unix us), rate/s (0 none), burst, cap (0 none), lease TTL (ms),
// lease id, max concurrency wait (ms), max probe wait (ms), key slack (ms),
// outside the breaker (1/0: the breaker is read, for open_until, but
// neither refuses nor makes this request its probe), replica id (the lease
// ids' prefix), handover (1/0).
//
// Returns {ok, cause (0 none, 1 breaker, 2 rate, 3 concurrency: the values
// of Cause), wait (us), probe, open_until (unix ms, 0 when closed), clean
// (1: the breaker holds nothing, neither an opening nor failures, so a
// success has nothing to reset)}.
//
// A replica refused by the cap is noted in the wanting zset. A handover
// (the slot of a request that ended, passed to the same replica's next
// request) is refused by the cap when another replica was refused within
// the last second and this one holds its share already: the cap divided
// among the replicas that hold a lease or want one (over_share). Without
// that, a replica with a backlog would pass its slots from request to
// request for as long as the backlog lasts, and the other replicas' jobs
// for the endpoint would not get one.
const admitLua = `
local function over_share(K, cap, now, replica)
  redis.call('ZREMRANGEBYSCORE', K[4], '-inf', now - 1000)
  local wanting = redis.call('ZRANGE', K[4], 0, -1)
  if #wanting == 0 or (#wanting == 1 and wanting[1] == replica) then
    return false
  end
  local holders, n, mine = {[replica] = true}, 1, 0
  for _, m in ipairs(redis.call('ZRANGE', K[3], 0, -1)) do
    local r = string.match(m, '^[^:]*:')
    if r == replica then
      mine = mine + 1
    elseif r and not holders[r] then
      holders[r] = true
      n = n + 1
    end
  end
  for _, r in ipairs(wanting) do
    if not holders[r] then
      holders[r] = true
      n = n + 1
    end
  end
  return mine >= math.ceil(cap / n)
end

local function admit(K, A)
  local now_us = tonumber(A[1])
  local now = math.floor(now_us / 1000)
  local ttl = tonumber(A[5])
  local slack = tonumber(A[9])
  local probe = 0
  local b = redis.call('HMGET', K[1], 'open_until', 'probe_until', 'fails')
  local ou = tonumber(b[1])
  local clean = 0
  if ou then
    if A[10] ~= '1' then
      if now < ou then
        return {0, 1, (ou - now) * 1000, 0, ou, 0}
      end
      local pu = tonumber(b[2])
      if pu and now < pu then
        local w = math.min(pu - now, tonumber(A[8]))
        return {0, 1, w * 1000, 0, ou, 0}
      end
      probe = 1
    end
  else
    ou = 0
    if not b[3] then clean = 1 end
  end
  local rate = tonumber(A[2])
  local new_tat
  if rate > 0 then
    local t = 1000000 / rate
    local tat = tonumber(redis.call('GET', K[2])) or now_us
    if tat < now_us then tat = now_us end
    new_tat = tat + t
    local allow_at = new_tat - tonumber(A[3]) * t
    if allow_at > now_us then
      return {0, 2, math.max(1, math.ceil(allow_at - now_us)), 0, ou, clean}
    end
  end
  local cap = tonumber(A[4])
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', K[3], '-inf', now)
    if redis.call('ZCARD', K[3]) >= cap then
      local first = redis.call('ZRANGE', K[3], 0, 0, 'WITHSCORES')
      local w = math.max(1, math.min(tonumber(first[2]) - now, tonumber(A[7])))
      redis.call('ZADD', K[4], now, A[11])
      redis.call('PEXPIRE', K[4], slack)
      return {0, 3, w * 1000, 0, ou, clean}
    end
    if A[12] == '1' and over_share(K, cap, now, A[11]) then
      return {0, 3, 1000, 0, ou, clean}
    end
    redis.call('ZADD', K[3], string.format('%.0f', now + ttl), A[6])
    if redis.call('PTTL', K[3]) < ttl + slack then
      redis.call('PEXPIRE', K[3], ttl + slack)
    end
  end
  if new_tat then
    redis.call('SET', K[2], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now_us) / 1000) + slack)
  end
  if probe == 1 then
    redis.call('HSET', K[1], 'probe', A[6], 'probe_until', string.format('%.0f', now + ttl))
  end
  return {1, 0, 0, probe, ou, clean}
end
`

var admitScript = redis.NewScript(admitLua + `return admit(KEYS, ARGV)`)

// handoverScript is Permit.Handover: recordScript, then admitScript for
// the same endpoint with a new lease, atomically, in one round trip. No
// other replica can take the released slot in between (an order Done then
// Admit could have run in anyway), unless the replica holds its share of
// the cap while another wants a slot: then the slot is released.
//
// KEYS: admitScript's.
// ARGV: recordScript's nine, then admitScript's twelve.
// Returns recordScript's two values, then admitScript's six.
var handoverScript = redis.NewScript(recordLua + admitLua + `
local r = record({KEYS[3], KEYS[1]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]})
local a = admit(KEYS, {ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16], ARGV[17], ARGV[18], ARGV[19], ARGV[20], ARGV[21]})
return {r[1], r[2], a[1], a[2], a[3], a[4], a[5], a[6]}
`)

// recordScript releases a lease and records an outcome in the breaker.
//
// KEYS (K): leases zset, breaker hash.
// ARGV (A): lease id, success (1/0), now (unix ms), probe (1/0), failures to
// open (0 = no breaker), base cool-down (ms), max cool-down (ms), breaker
// key TTL (ms), failing-for (ms): how long the run of failures must have
// lasted, besides its count, to open.
// Returns {open_until (unix ms, 0 when closed), transition (0 none, 1
// opened, 2 closed)}.
const recordLua = `
local function record(K, A)
  redis.call('ZREM', K[1], A[1])
  local threshold = tonumber(A[5])
  if threshold <= 0 then return {0, 0} end
  local now = tonumber(A[3])
  local is_probe = A[4] == '1'
  local b = redis.call('HMGET', K[2], 'open_until', 'fails', 'opens', 'probe')
  local ou = tonumber(b[1])
  if is_probe and b[4] == A[1] then
    redis.call('HDEL', K[2], 'probe', 'probe_until')
  end
  if ou then
    if not is_probe or now < ou then
      return {ou, 0} -- outcomes of requests admitted before the opening do not count
    end
    if A[2] == '1' then
      redis.call('DEL', K[2])
      return {0, 2}
    end
    local opens = math.min((tonumber(b[3]) or 1) + 1, 64)
    local cd = math.min(tonumber(A[6]) * 2 ^ (opens - 1), tonumber(A[7]))
    ou = now + cd
    redis.call('HSET', K[2], 'open_until', string.format('%.0f', ou), 'opens', opens)
    redis.call('PEXPIRE', K[2], A[8])
    return {ou, 1}
  end
  if A[2] == '1' then
    if b[2] then redis.call('DEL', K[2]) end
    return {0, 0}
  end
  local fails = redis.call('HINCRBY', K[2], 'fails', 1)
  if fails == 1 then
    redis.call('HSET', K[2], 'fail_since', string.format('%.0f', now))
  end
  local since = tonumber(redis.call('HGET', K[2], 'fail_since')) or now
  if fails >= threshold and now - since >= tonumber(A[9]) then
    ou = now + tonumber(A[6])
    redis.call('HSET', K[2], 'open_until', string.format('%.0f', ou), 'opens', 1)
    redis.call('HDEL', K[2], 'fails', 'fail_since')
    redis.call('PEXPIRE', K[2], A[8])
    return {ou, 1}
  end
  redis.call('PEXPIRE', K[2], A[8])
  return {0, 0}
end
`

var recordScript = redis.NewScript(recordLua + `return record(KEYS, ARGV)`)

func (l *Limiter) admitRedis(ctx context.Context, now time.Time, endpoint string, rate int, ttl time.Duration, lease string, outsideBreaker bool) (Verdict, breakerState, error) {
	res, err := admitScript.Run(ctx, l.rdb, l.admitKeys(endpoint), l.admitArgs(now, rate, ttl, lease, outsideBreaker, false)...).Int64Slice()
	if err != nil {
		return Verdict{}, breakerState{}, err
	}
	return admitReply(res)
}

func (l *Limiter) recordRedis(ctx context.Context, now time.Time, endpoint, lease string, probe, success bool) (breakerState, error) {
	keys := []string{l.key(endpoint, "leases"), l.key(endpoint, "breaker")}
	res, err := recordScript.Run(ctx, l.rdb, keys, l.recordArgs(now, lease, probe, success)...).Int64Slice()
	if err != nil {
		return breakerState{}, err
	}
	return recordReply(res)
}

// handoverRedis records the outcome of the request that held lease and
// admits another in its place (handoverScript).
func (l *Limiter) handoverRedis(ctx context.Context, now time.Time, endpoint, lease string, probe, success bool, rate int, ttl time.Duration, next string) (Verdict, breakerState, error) {
	args := append(l.recordArgs(now, lease, probe, success), l.admitArgs(now, rate, ttl, next, false, true)...)
	res, err := handoverScript.Run(ctx, l.rdb, l.admitKeys(endpoint), args...).Int64Slice()
	if err != nil {
		return Verdict{}, breakerState{}, err
	}
	if len(res) != 8 {
		return Verdict{}, breakerState{}, fmt.Errorf("limit: unexpected handover reply %v", res)
	}
	if _, err := recordReply(res[:2]); err != nil { // counts the breaker's transition
		return Verdict{}, breakerState{}, err
	}
	return admitReply(res[2:])
}

func (l *Limiter) admitKeys(endpoint string) []string {
	return []string{l.key(endpoint, "breaker"), l.key(endpoint, "rate"), l.key(endpoint, "leases"), l.key(endpoint, "wanting")}
}

func (l *Limiter) admitArgs(now time.Time, rate int, ttl time.Duration, lease string, outsideBreaker, handover bool) []any {
	return []any{now.UnixMicro(), rate, burst(rate), max(l.capacity, 0), ttl.Milliseconds(), lease,
		maxConcurrencyWait.Milliseconds(), l.coolDown.Milliseconds(), keySlack.Milliseconds(), b01(outsideBreaker),
		l.id, b01(handover)}
}

func (l *Limiter) recordArgs(now time.Time, lease string, probe, success bool) []any {
	return []any{lease, b01(success), now.UnixMilli(), b01(probe), max(l.failures, 0),
		l.coolDown.Milliseconds(), l.maxCoolDown.Milliseconds(), (breakerKeyTTL + l.maxCoolDown).Milliseconds(),
		l.failingFor.Milliseconds()}
}

func admitReply(res []int64) (Verdict, breakerState, error) {
	if len(res) != 6 || (res[0] != 1 && (res[1] < int64(Breaker) || res[1] > int64(Concurrency))) {
		return Verdict{}, breakerState{}, fmt.Errorf("limit: unexpected admit reply %v", res)
	}
	st := breakerState{open: res[4] > 0, openUntil: res[4], clean: res[5] == 1}
	if res[0] == 1 {
		return Verdict{Allowed: true, Probe: res[3] == 1}, st, nil
	}
	return Verdict{Cause: Cause(res[1]), RetryIn: time.Duration(res[2]) * time.Microsecond}, st, nil
}

// recordReply reads recordScript's reply and counts the breaker's
// transition.
func recordReply(res []int64) (breakerState, error) {
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
	// clean: the breaker held nothing, neither an opening nor failures
	// (admit's replies only).
	clean bool
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
