// Package cache serves tenants' endpoints to routers and senders without a
// store round trip per event. Two layers sit in front of the store of record:
//
//   - an in-process map, dropped for a tenant whenever the KV bucket reports
//     a change to one of its endpoints (a durable, resumable watch), so every
//     replica sees a change within milliseconds;
//   - Redis, shared by all replicas, whose entries are valid only while a
//     per-tenant generation and a global epoch are unchanged. A change bumps
//     the generation; a replica that starts, or finds Redis back after an
//     outage, bumps the epoch, so nothing written before a gap is trusted.
//
// Redis is optional: without it, or while it is down, misses go to the store
// (slower, logged once per outage, herald_cache_redis_up = 0) and routing goes
// on.
package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

var (
	lookups = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_cache_lookups_total",
		Help: "Endpoint lookups by the layer that answered: local, redis or store.",
	}, []string{"layer"})
	currentWaits = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_cache_current_timeouts_total",
		Help: "Waits for the endpoint change watch to apply the last change that timed out; the router retries the events concerned.",
	})
	redisUp = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_cache_redis_up",
		Help: "1 while the Redis cache answers, 0 while lookups fall back to the store.",
	})
)

// The layers exist from the start, at 0, so that alert rules can tell a
// process that uses Redis from one that never looked anything up.
func init() {
	for _, l := range []string{"local", "redis", "store"} {
		lookups.WithLabelValues(l)
	}
}

// Source is the store of record as the cache needs it.
type Source interface {
	ListEndpoints(ctx context.Context, tenant string) ([]store.Endpoint, error)
}

// Cache answers endpoint lookups for routers and senders.
type Cache struct {
	src    Source
	kv     jetstream.KeyValue
	js     jetstream.JetStream // for the change watch; nil: kv.Watch
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
	log    zerolog.Logger
	sealer *seal.Sealer

	mu    sync.RWMutex
	local map[string]*entry

	redisDown atomic.Bool
	ready     atomic.Bool
	started   chan struct{} // closed once the watch first runs (Started)
	startOnce sync.Once
	watchDown atomic.Bool // the watch stopped and has not run since
	// changes counts invalidations; a load keeps its result locally only if
	// none happened while it fetched, or it could put back a stale value.
	changes atomic.Uint64
	// onChange is told of every invalidation (see OnChange).
	onChange []func(tenant string)

	// applied is the bucket stream's sequence up to which the watch has
	// applied endpoint changes; advanced is closed when it grows (both
	// under amu). rounds runs Current's checks. See current.go.
	amu      sync.Mutex
	applied  uint64
	advanced chan struct{}
	rounds   rounds
	// direct: the bucket's stream has one replica and allows direct gets,
	// so Current may ask with one (see lastChange).
	direct    atomic.Bool
	lastQuery lastQuery // set in New when the cache has js
}

type entry struct {
	endpoints []store.Endpoint
	byID      map[string]int
	loaded    time.Time
}

// Option configures a Cache.
type Option func(*Cache)

// WithRedis adds the shared Redis layer; keys start with prefix.
func WithRedis(rdb redis.UniversalClient, prefix string) Option {
	return func(c *Cache) { c.rdb, c.prefix = rdb, prefix }
}

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(c *Cache) { c.log = l } }

// WithSealer keeps endpoint secrets sealed in Redis: they are sealed before
// an entry is written and opened after it is read (the in-process layer
// holds them in clear). An entry that does not open (sealed under a key
// this process does not hold) is a miss, answered by the store. Give it
// the store's sealer.
func WithSealer(s *seal.Sealer) Option { return func(c *Cache) { c.sealer = s } }

// WithJetStream makes the change watch an ordered pull consumer on the
// bucket's stream with 1 s heartbeats, which resets itself within a second
// of a reconnect and within seconds of losing the server that held it. A
// plain kv.Watch (an ordered push consumer with 5 s heartbeats, used without
// this option) went deaf for 8 to 17 s after a NATS restart or the loss of a
// cluster node, with Ready still true: an endpoint created meanwhile got no
// events, a deleted one kept getting them (services/faults found it).
func WithJetStream(js jetstream.JetStream) Option { return func(c *Cache) { c.js = js } }

// WithTTL bounds how long any cached entry is trusted even if no change
// notice arrives: a backstop, not the mechanism.
func WithTTL(d time.Duration) Option { return func(c *Cache) { c.ttl = d } }

// New returns a cache over src whose in-process layer is invalidated by
// watching kv. Call Run to start the watch.
func New(src Source, kv jetstream.KeyValue, opts ...Option) *Cache {
	c := &Cache{src: src, kv: kv, ttl: 5 * time.Minute, log: zerolog.Nop(), local: map[string]*entry{}, started: make(chan struct{}), advanced: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	if c.js != nil {
		c.lastQuery = c.newLastQuery()
	}
	redisUp.Set(0)
	return c
}

// Ready reports whether the change watch is running, so the cache can be
// trusted to notice changes.
func (c *Cache) Ready() bool { return c.ready.Load() }

// Started is closed once the change watch first runs, so a process can
// wait for it before it says it is ready (Ready may turn false later,
// while the watch restarts).
func (c *Cache) Started() <-chan struct{} { return c.started }

// Run watches the store for endpoint changes until ctx ends, restarting the
// watch after errors. Each (re)start drops the whole in-process layer and
// bumps the Redis epoch, because changes may have been missed meanwhile.
func (c *Cache) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := c.watch(ctx)
		// Without a watch nothing local can be trusted: forget it, and keep
		// nothing new (load stores only while ready) until a watch runs.
		c.ready.Store(false)
		c.dropAll()
		if err != nil && ctx.Err() == nil {
			// Once per outage, not once a second.
			if c.watchDown.CompareAndSwap(false, true) {
				c.log.Warn().Err(err).Msg("endpoint change watch stopped; reading endpoints without the local layer until it runs again")
			} else {
				c.log.Debug().Err(err).Msg("endpoint change watch still down")
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (c *Cache) watch(ctx context.Context) error {
	if c.js != nil {
		return c.watchStream(ctx)
	}
	w, err := c.kv.Watch(ctx, store.WatchPattern, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watch endpoints: %w", err)
	}
	defer w.Stop()
	// Redis first, as in Invalidate.
	c.bumpEpoch(ctx)
	c.dropAll()
	c.ready.Store(true)
	c.watching()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil {
				continue
			}
			if tenant, ok := store.TenantOfKey(e.Key()); ok {
				c.Invalidate(ctx, tenant)
			}
		}
	}
}

// watchStream is watch over an ordered consumer of the bucket's stream. It
// starts after the stream's last sequence rather than at "new", so that a
// reset before the first change still resumes where the watch began and no
// change is skipped.
func (c *Cache) watchStream(ctx context.Context) error {
	stream := "KV_" + c.kv.Bucket()
	prefix := "$KV." + c.kv.Bucket() + "."
	st, err := c.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("watch endpoints: %w", err)
	}
	info := st.CachedInfo()
	start := info.State.LastSeq
	c.direct.Store(info.Config.Replicas <= 1 && info.Config.AllowDirect)
	oc, err := c.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{c.changeSubjects()},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start + 1,
	})
	if err != nil {
		return fmt.Errorf("watch endpoints: %w", err)
	}
	// Set before the first change can arrive: the watch is not ready yet,
	// so nothing is served from what it has not applied.
	c.apply(start, true)
	// Any error (missed heartbeats, a lost connection or consumer) may
	// hide a change: restart the watch rather than wait for the consumer's
	// own reset, whose backoff grows to 10 s.
	interrupted := make(chan error, 1)
	cc, err := oc.Consume(func(m jetstream.Msg) {
		if tenant, ok := store.TenantOfKey(strings.TrimPrefix(m.Subject(), prefix)); ok {
			c.Invalidate(ctx, tenant)
		}
		if meta, err := m.Metadata(); err == nil {
			c.apply(meta.Sequence.Stream, false)
		}
	}, jetstream.PullHeartbeat(time.Second), jetstream.PullExpiry(5*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			select {
			case interrupted <- err:
			default:
			}
		}))
	if err != nil {
		return fmt.Errorf("watch endpoints: %w", err)
	}
	defer cc.Stop()
	// Closed starts a goroutine that lives until the consumer stops, on
	// every call: ask once, or an idle watch grows by one a second.
	closed := cc.Closed()
	// Redis first, as in Invalidate.
	c.bumpEpoch(ctx)
	c.dropAll()
	c.ready.Store(true)
	c.watching()
	// A watchdog: the consumer has also been seen to stall silently after
	// a cluster node came back (no error, no pull waiting on the server,
	// changes pending for 20 s). Changes pending on two ticks in a row
	// without progress, or a consumer the server cannot describe for three
	// seconds, restart the watch.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var stalledAt uint64
	var pending bool
	missing := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-closed:
			return errors.New("watch closed")
		case err := <-interrupted:
			return fmt.Errorf("watch interrupted: %w", err)
		case <-tick.C:
		}
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		ci, err := oc.Info(ictx)
		cancel()
		if err != nil {
			if missing++; missing >= 3 {
				return fmt.Errorf("watch consumer unreachable: %w", err)
			}
			continue
		}
		missing = 0
		if pending && ci.NumPending > 0 && ci.Delivered.Stream == stalledAt {
			return fmt.Errorf("watch stalled at stream sequence %d with %d changes pending", stalledAt, ci.NumPending)
		}
		pending, stalledAt = ci.NumPending > 0, ci.Delivered.Stream
	}
}

// watching notes that a watch runs, and says so once after an outage.
func (c *Cache) watching() {
	c.startOnce.Do(func() { close(c.started) })
	if c.watchDown.Swap(false) {
		c.log.Info().Msg("endpoint change watch running again")
	}
}

// OnChange registers fn to be told, after the cache forgot them, that a
// tenant's endpoints changed: by this process's API or, through the watch,
// by any process. fn must not block. Register before Run starts.
func (c *Cache) OnChange(fn func(tenant string)) { c.onChange = append(c.onChange, fn) }

// Invalidate forgets a tenant's endpoints in both layers. The API calls it
// after every write, and every replica's watch calls it again: either alone
// suffices.
//
// Redis forgets first: a lookup that misses the local layer after it was
// dropped must not find the old Redis entry still current, or it would put
// that entry back in memory.
func (c *Cache) Invalidate(ctx context.Context, tenant string) {
	if c.rdb != nil {
		if err := c.rdb.Incr(ctx, c.genKey(tenant)).Err(); err != nil {
			c.redisFailed(err)
		}
	}
	c.changes.Add(1)
	c.mu.Lock()
	delete(c.local, tenant)
	c.mu.Unlock()
	for _, fn := range c.onChange {
		fn(tenant)
	}
}

// Endpoints returns a tenant's endpoints. The slice is shared: callers must
// not modify it.
func (c *Cache) Endpoints(ctx context.Context, tenant string) ([]store.Endpoint, error) {
	e, err := c.load(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return e.endpoints, nil
}

// Endpoint returns one endpoint of a tenant, or store.ErrNotFound.
//
// A miss is checked with the store of record before it is believed: the
// cached list may predate the endpoint (its creation not yet seen by the
// watch), and a sender drops a job whose endpoint is not found.
func (c *Cache) Endpoint(ctx context.Context, tenant, id string) (store.Endpoint, error) {
	e, err := c.load(ctx, tenant)
	if err != nil {
		return store.Endpoint{}, err
	}
	if i, ok := e.byID[id]; ok {
		return e.endpoints[i], nil
	}
	g, ok := c.src.(endpointGetter)
	if !ok {
		return store.Endpoint{}, store.ErrNotFound
	}
	lookups.WithLabelValues("store").Inc()
	ep, err := g.GetEndpoint(ctx, tenant, id)
	if err == nil {
		c.log.Info().Str("tenant_id", tenant).Str("endpoint_id", id).Msg("endpoint missing from the cache but in the store; cache entry dropped")
		c.Invalidate(ctx, tenant)
	}
	return ep, err
}

// endpointGetter is a Source that can read one endpoint.
type endpointGetter interface {
	GetEndpoint(ctx context.Context, tenant, id string) (store.Endpoint, error)
}

func (c *Cache) load(ctx context.Context, tenant string) (*entry, error) {
	c.mu.RLock()
	e := c.local[tenant]
	c.mu.RUnlock()
	if e != nil && time.Since(e.loaded) < c.ttl {
		lookups.WithLabelValues("local").Inc()
		return e, nil
	}
	before := c.changes.Load()
	eps, err := c.fetch(ctx, tenant)
	if err != nil {
		return nil, err
	}
	e = newEntry(eps)
	// Only a watching cache may keep entries: without the watch it could not
	// hear of changes. The check is made under the lock: Invalidate counts a
	// change before it takes the lock, so either this sees the change or
	// Invalidate runs after this store and drops it.
	c.mu.Lock()
	if c.ready.Load() && c.changes.Load() == before {
		c.local[tenant] = e
	}
	c.mu.Unlock()
	return e, nil
}

func newEntry(eps []store.Endpoint) *entry {
	e := &entry{endpoints: eps, byID: make(map[string]int, len(eps)), loaded: time.Now()}
	for i := range eps {
		e.byID[eps[i].ID] = i
	}
	return e
}

// redisEntry is what the Redis layer stores for a tenant.
type redisEntry struct {
	Epoch     string           `json:"epoch"`
	Gen       string           `json:"gen"`
	Endpoints []store.Endpoint `json:"endpoints"`
}

// setIfCurrent stores an entry only if the generation and epoch it was
// computed under are still current, so a slow reader cannot put back a value
// that a concurrent change already invalidated.
var setIfCurrent = redis.NewScript(`
local epoch = redis.call('GET', KEYS[1]) or '0'
local gen = redis.call('GET', KEYS[2]) or '0'
if epoch == ARGV[1] and gen == ARGV[2] then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0`)

func (c *Cache) fetch(ctx context.Context, tenant string) ([]store.Endpoint, error) {
	if c.rdb == nil {
		lookups.WithLabelValues("store").Inc()
		return c.src.ListEndpoints(ctx, tenant)
	}
	wasDown := c.redisDown.Load()
	vals, err := c.rdb.MGet(ctx, c.epochKey(), c.genKey(tenant), c.entryKey(tenant)).Result()
	if err != nil {
		c.redisFailed(err)
		lookups.WithLabelValues("store").Inc()
		return c.src.ListEndpoints(ctx, tenant)
	}
	if wasDown {
		// Redis answers again, but what it holds predates the outage and
		// may miss changes made during it: bump the epoch, and neither serve
		// what was read nor write under its epoch.
		c.redisBack(ctx)
		lookups.WithLabelValues("store").Inc()
		return c.src.ListEndpoints(ctx, tenant)
	}
	redisUp.Set(1)
	epoch, gen := str(vals[0]), str(vals[1])
	if raw := str(vals[2]); raw != "0" {
		var re redisEntry
		if json.Unmarshal([]byte(raw), &re) == nil && re.Epoch == epoch && re.Gen == gen && c.open(tenant, re.Endpoints) {
			lookups.WithLabelValues("redis").Inc()
			return re.Endpoints, nil
		}
	}
	lookups.WithLabelValues("store").Inc()
	eps, err := c.src.ListEndpoints(ctx, tenant)
	if err != nil {
		return nil, err
	}
	sealed, err := c.seal(tenant, eps)
	if err != nil {
		// Not cached in Redis; the store answered, and keeps answering.
		c.log.Warn().Err(err).Str("tenant_id", tenant).Msg("endpoints not cached in redis: a secret could not be sealed")
		return eps, nil
	}
	b, err := json.Marshal(redisEntry{Epoch: epoch, Gen: gen, Endpoints: sealed})
	if err == nil {
		err = setIfCurrent.Run(ctx, c.rdb, []string{c.epochKey(), c.genKey(tenant), c.entryKey(tenant)},
			epoch, gen, b, c.ttl.Milliseconds()).Err()
	}
	if err != nil {
		c.redisFailed(err)
	}
	return eps, nil
}

// seal returns copies of eps whose secrets are sealed for Redis, each bound
// to its endpoint; eps is left in clear.
func (c *Cache) seal(tenant string, eps []store.Endpoint) ([]store.Endpoint, error) {
	out := make([]store.Endpoint, len(eps))
	for i := range eps {
		e, err := store.SealEndpoint(c.sealer, eps[i], store.EndpointKey(tenant, eps[i].ID))
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", eps[i].ID, err)
		}
		out[i] = e
	}
	return out, nil
}

// open opens the secrets of endpoints read from Redis in place, and reports
// whether all of them opened.
func (c *Cache) open(tenant string, eps []store.Endpoint) bool {
	for i := range eps {
		if err := store.OpenEndpoint(c.sealer, &eps[i], store.EndpointKey(tenant, eps[i].ID)); err != nil {
			c.log.Warn().Err(err).Str("tenant_id", tenant).Msg("redis entry does not open; reading the store")
			return false
		}
	}
	return true
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return "0"
}

func (c *Cache) bumpEpoch(ctx context.Context) {
	if c.rdb == nil {
		return
	}
	if err := c.rdb.Incr(ctx, c.epochKey()).Err(); err != nil {
		c.redisFailed(err)
	}
}

func (c *Cache) redisFailed(err error) {
	if c.redisDown.CompareAndSwap(false, true) {
		redisUp.Set(0)
		c.log.Warn().Err(err).Msg("redis cache unavailable; reading endpoints from the store until it returns")
	}
}

// redisBack ends an outage. The epoch is bumped, because changes made
// meanwhile could not bump their generations, and only then is the outage
// flag cleared: a lookup that finds it clear reads the new epoch.
func (c *Cache) redisBack(ctx context.Context) {
	if err := c.rdb.Incr(ctx, c.epochKey()).Err(); err != nil {
		c.redisFailed(err)
		return
	}
	if c.redisDown.CompareAndSwap(true, false) {
		c.log.Info().Msg("redis cache is back")
	}
	redisUp.Set(1)
}

func (c *Cache) dropAll() {
	c.changes.Add(1)
	c.mu.Lock()
	c.local = map[string]*entry{}
	c.mu.Unlock()
}

func (c *Cache) epochKey() string            { return c.prefix + "cache:epoch" }
func (c *Cache) genKey(tenant string) string { return c.prefix + "cache:gen:" + tenant }
func (c *Cache) entryKey(tenant string) string {
	return c.prefix + "cache:endpoints:" + tenant
}
