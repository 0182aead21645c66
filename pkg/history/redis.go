package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxEventEntries bounds what one event's view reads: endpoints times
// attempts of a normal event are far below it.
const maxEventEntries = 2000

// Redis is the shared index. Key layout, under prefix ("herald:history:"):
//
//	marker                          set once the index is initialized (no TTL)
//	lock                            held while one process resets the consumers
//	a:<tenant>:<attempt id>         the attempt, JSON; expires at its time + retention
//	ep:<tenant>:<endpoint>          sorted set of attempt ids, score = time (ms)
//	ep:<tenant>:<endpoint>:ok       the same, 2xx attempts only
//	ep:<tenant>:<endpoint>:fail     the same, the other attempts
//	ev:<tenant>:<event id>          hash: seq, type, at, ep (where the event is in EVENTS)
//	evx:<tenant>:<event id>         sorted set of the event's entries: a:<attempt id>, d:<dead letter JSON>
//
// Sorted sets are trimmed to the retention at every write and expire a
// retention after their last write.
type Redis struct {
	rdb       redis.UniversalClient
	prefix    string
	retention time.Duration
	now       func() time.Time
}

// NewRedis returns the Redis index; keys start with prefix + "history:".
func NewRedis(rdb redis.UniversalClient, prefix string, retention time.Duration) *Redis {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Redis{rdb: rdb, prefix: prefix + "history:", retention: retention, now: time.Now}
}

func (r *Redis) key(parts ...string) string { return r.prefix + strings.Join(parts, ":") }

func (r *Redis) epKey(tenant, endpoint string, s Status) string {
	switch s {
	case StatusSucceeded:
		return r.key("ep", tenant, endpoint, "ok")
	case StatusFailed:
		return r.key("ep", tenant, endpoint, "fail")
	}
	return r.key("ep", tenant, endpoint)
}

func unavailable(err error) error { return fmt.Errorf("%w: %w", ErrUnavailable, err) }

// Apply implements Index with one pipeline per batch.
func (r *Redis) Apply(ctx context.Context, b *Batch) (bool, error) {
	now := r.now()
	cutoff := now.Add(-r.retention)
	pipe := r.rdb.Pipeline()
	sets := map[string]bool{}
	for _, e := range b.Events {
		ttl := e.AcceptedAt.Sub(cutoff)
		if ttl <= 0 {
			continue
		}
		k := r.key("ev", e.Tenant, e.ID)
		pipe.HSet(ctx, k, "seq", e.Seq, "type", e.Type, "at", e.AcceptedAt.UnixMilli(), "ep", e.EndpointID)
		pipe.PExpire(ctx, k, ttl)
	}
	for _, a := range b.Attempts {
		ttl := a.At.Sub(cutoff)
		if ttl <= 0 {
			continue
		}
		score := float64(a.At.UnixMilli())
		pipe.Set(ctx, r.key("a", a.Tenant, a.ID), marshal(a.Attempt), ttl)
		for _, km := range [...][2]string{
			{r.epKey(a.Tenant, a.EndpointID, StatusAll), a.ID},
			{r.epKey(a.Tenant, a.EndpointID, a.Status), a.ID},
			{r.key("evx", a.Tenant, a.EventID), "a:" + a.ID},
		} {
			pipe.ZAdd(ctx, km[0], redis.Z{Score: score, Member: km[1]})
			sets[km[0]] = true
		}
	}
	for _, d := range b.DeadLetters {
		if d.At.Before(cutoff) {
			continue
		}
		k := r.key("evx", d.Tenant, d.EventID)
		pipe.ZAdd(ctx, k, redis.Z{Score: float64(d.At.UnixMilli()), Member: "d:" + marshal(d.DeadLetter)})
		sets[k] = true
	}
	for k := range sets {
		pipe.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(cutoff.UnixMilli(), 10))
		pipe.Expire(ctx, k, r.retention)
	}
	marker := pipe.Exists(ctx, r.key("marker"))
	if _, err := pipe.Exec(ctx); err != nil {
		return false, unavailable(err)
	}
	return marker.Val() == 1, nil
}

// Marker implements Index.
func (r *Redis) Marker(ctx context.Context) (bool, error) {
	n, err := r.rdb.Exists(ctx, r.key("marker")).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return n == 1, nil
}

// Lock implements Index.
func (r *Redis) Lock(ctx context.Context, ttl time.Duration) (bool, error) {
	ok, err := r.rdb.SetNX(ctx, r.key("lock"), strconv.FormatInt(r.now().UnixMilli(), 10), ttl).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return ok, nil
}

// SetMarker implements Index.
func (r *Redis) SetMarker(ctx context.Context) error {
	pipe := r.rdb.TxPipeline()
	pipe.Set(ctx, r.key("marker"), r.now().UTC().Format(time.RFC3339), 0)
	pipe.Del(ctx, r.key("lock"))
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}

// Attempts implements Index. A page continues after the cursor's member by
// rank; if that member has expired meanwhile, by its score.
func (r *Redis) Attempts(ctx context.Context, tenant, endpoint string, q Query) (Page, error) {
	var p Page
	k := r.epKey(tenant, endpoint, q.Status)
	min := strconv.FormatInt(r.now().Add(-r.retention).UnixMilli(), 10)
	var zs []redis.Z
	var err error
	switch {
	case q.Cursor == "":
		zs, err = r.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: k, Start: "+inf", Stop: min, ByScore: true, Rev: true, Count: int64(q.Limit + 1)}).Result()
	default:
		c, cerr := decodeCursor(q.Cursor)
		if cerr != nil {
			return p, cerr
		}
		rank, rerr := r.rdb.ZRevRank(ctx, k, c.Member).Result()
		switch {
		case rerr == nil:
			zs, err = r.rdb.ZRevRangeWithScores(ctx, k, rank+1, rank+int64(q.Limit)+1).Result()
		case errors.Is(rerr, redis.Nil):
			zs, err = r.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: k, Start: "(" + strconv.FormatInt(c.Score, 10), Stop: min, ByScore: true, Rev: true, Count: int64(q.Limit + 1)}).Result()
		default:
			err = rerr
		}
	}
	if err != nil {
		return p, unavailable(err)
	}
	minScore, _ := strconv.ParseFloat(min, 64)
	for i, z := range zs {
		if z.Score < minScore {
			zs = zs[:i]
			break
		}
	}
	more := len(zs) > q.Limit
	if more {
		zs = zs[:q.Limit]
	}
	if len(zs) == 0 {
		return p, nil
	}
	keys := make([]string, len(zs))
	for i, z := range zs {
		keys[i] = r.key("a", tenant, z.Member.(string))
	}
	vals, err := r.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return p, unavailable(err)
	}
	for _, v := range vals {
		var a Attempt
		if s, ok := v.(string); ok && json.Unmarshal([]byte(s), &a) == nil {
			p.Attempts = append(p.Attempts, a)
		}
	}
	if more {
		last := zs[len(zs)-1]
		p.NextCursor = cursor{Score: int64(math.Round(last.Score)), Member: last.Member.(string)}.encode()
	}
	return p, nil
}

// Counts implements Index: two ZCOUNTs per endpoint, in one pipeline.
func (r *Redis) Counts(ctx context.Context, tenant string, endpoints []string, since time.Time) (map[string]Counts, error) {
	out := make(map[string]Counts, len(endpoints))
	if len(endpoints) == 0 {
		return out, nil
	}
	min := strconv.FormatInt(maxTime(since, r.now().Add(-r.retention)).UnixMilli(), 10)
	pipe := r.rdb.Pipeline()
	ok := make([]*redis.IntCmd, len(endpoints))
	fail := make([]*redis.IntCmd, len(endpoints))
	for i, ep := range endpoints {
		ok[i] = pipe.ZCount(ctx, r.epKey(tenant, ep, StatusSucceeded), min, "+inf")
		fail[i] = pipe.ZCount(ctx, r.epKey(tenant, ep, StatusFailed), min, "+inf")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable(err)
	}
	for i, ep := range endpoints {
		out[ep] = Counts{Succeeded: int(ok[i].Val()), Failed: int(fail[i].Val())}
	}
	return out, nil
}

// Event implements Index.
func (r *Redis) Event(ctx context.Context, tenant, id string) (EventEntries, error) {
	var out EventEntries
	pipe := r.rdb.Pipeline()
	rec := pipe.HGetAll(ctx, r.key("ev", tenant, id))
	entries := pipe.ZRangeWithScores(ctx, r.key("evx", tenant, id), 0, maxEventEntries-1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return out, unavailable(err)
	}
	if m := rec.Val(); len(m) > 0 {
		seq, _ := strconv.ParseUint(m["seq"], 10, 64)
		at, _ := strconv.ParseInt(m["at"], 10, 64)
		out.Record = &EventRecord{ID: id, Type: m["type"], EndpointID: m["ep"], Seq: seq, AcceptedAt: time.UnixMilli(at).UTC()}
	}
	var keys []string
	for _, z := range entries.Val() {
		m := z.Member.(string)
		switch {
		case strings.HasPrefix(m, "a:"):
			keys = append(keys, r.key("a", tenant, m[2:]))
		case strings.HasPrefix(m, "d:"):
			var d DeadLetter
			if json.Unmarshal([]byte(m[2:]), &d) == nil {
				out.DeadLetters = append(out.DeadLetters, d)
			}
		}
	}
	if len(keys) > 0 {
		vals, err := r.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return out, unavailable(err)
		}
		for _, v := range vals {
			var a Attempt
			if s, ok := v.(string); ok && json.Unmarshal([]byte(s), &a) == nil {
				out.Attempts = append(out.Attempts, a)
			}
		}
	}
	return out, nil
}
