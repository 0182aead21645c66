// Package payload keeps large event bodies out of the message path. A body
// above the inline threshold is stored once in the JetStream object store
// bucket herald-payloads (zstd-compressed when that saves more than 10 %);
// the event, and every job made from it, carries only a reference to it
// (heraldv1.PayloadRef, a claim check). Senders read bodies through an
// in-memory cache, so a fanout of one event to a hundred endpoints reads it
// once, and a body is removed when no job needs it any more.
//
// Who needs a body is counted in the stream PAYLOAD_REFS, one counter
// subject per body (nats-server 2.12+ message counters: an atomic increment
// in one publish, so a hundred senders finishing at once do not contend on
// a compare-and-set):
//
//   - the router adds the number of jobs it made for the event, before it
//     publishes them; none at all removes the body at once;
//   - a sender subtracts one when a job ends as delivered (or is dropped
//     with its deleted endpoint), after JetStream confirmed the job's ack,
//     so a redelivery never finds the body gone; at zero the body is
//     deleted;
//   - a dead-lettered job keeps its count: a replay needs the body, and the
//     replayed job's delivery subtracts it;
//   - a resend adds its jobs (Retain) and fails with ErrGone if the body
//     was already removed.
//
// Every change carries a Nats-Msg-Id, so a redelivered routing or release is
// not counted twice. Whatever the counts miss (a process that died between a
// confirmed ack and its release, a dead letter that expired) the bucket's
// TTL, equal to the events retention, removes.
package payload

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
)

// Defaults.
const (
	// DefaultInlineBytes: bodies up to this size travel inside the event.
	DefaultInlineBytes = 64 << 10
	// DefaultMaxBytes is the largest body accepted.
	DefaultMaxBytes = 5 << 20
	// DefaultCacheBytes caps the decoded bodies a process keeps in memory.
	DefaultCacheBytes = 64 << 20
	// DefaultTTL is the bucket's TTL: the default events retention.
	DefaultTTL = bus.DefaultEventsMaxAge
)

// Encodings of stored bodies, as recorded in PayloadRef.Encoding and in the
// object's Content-Encoding header.
const (
	EncodingIdentity = ""
	EncodingZstd     = "zstd"
	// HeaderEncoding is the object header naming the encoding; producers
	// that store zstd-compressed bodies themselves set it to "zstd".
	HeaderEncoding = "Content-Encoding"
)

// envelopeRoom is what an event message needs besides an inline body: the
// inline threshold is kept this far below the server's max_payload.
const envelopeRoom = 64 << 10

var (
	// ErrGone: the body was removed (every job that needed it ended, or
	// the bucket's TTL expired it). Nothing will bring it back.
	ErrGone = errors.New("event body is no longer stored")
	// ErrInvalid: the reference or the stored body cannot be used (wrong
	// tenant, wrong bucket, not JSON, unknown encoding, size mismatch).
	ErrInvalid = errors.New("invalid event body reference")
	// ErrTooLarge: the body is larger than the configured maximum.
	ErrTooLarge = fmt.Errorf("%w: body too large", ErrInvalid)
)

// Permanent reports whether err says the body cannot be had, now or later.
func Permanent(err error) bool { return errors.Is(err, ErrGone) || errors.Is(err, ErrInvalid) }

var (
	gets = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_payload_gets_total",
		Help: "Event bodies read through the payload store, by source: cache, store (an object store read), shared (waited for a read in flight).",
	}, []string{"source"})
	stored = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_payload_stored_total",
		Help: "Event bodies stored in the object store, by encoding (identity, zstd).",
	}, []string{"encoding"})
	storedBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_payload_stored_bytes_total",
		Help: "Bytes of event bodies stored, before (kind=data) and after (kind=stored) compression.",
	}, []string{"kind"})
	removed = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_payload_removed_total",
		Help: "Event bodies removed because no job needs them any more.",
	})
	cacheBytes = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_payload_cache_bytes",
		Help: "Bytes of decoded event bodies held in this process's cache.",
	})
)

// Config sizes the store. Zero values take the defaults.
type Config struct {
	// Replicas of the bucket and the counter stream.
	Replicas int
	// TTL removes bodies that outlive it whatever their counts: the events
	// retention (HERALD_EVENTS_RETENTION).
	TTL time.Duration
	// DuplicateWindow of the counter stream: how long a counted change is
	// remembered by its id (HERALD_DUPLICATE_WINDOW).
	DuplicateWindow time.Duration
	// InlineBytes is the largest body kept inside the event
	// (HERALD_INLINE_PAYLOAD_BYTES). It is lowered to leave room below the
	// server's max_payload.
	InlineBytes int
	// MaxBytes is the largest body accepted (HERALD_MAX_EVENT_BYTES).
	MaxBytes int
	// CacheBytes caps the decoded bodies kept in memory
	// (HERALD_PAYLOAD_CACHE_BYTES).
	CacheBytes int64
	// Bulk, if set, is a JetStream context on a connection of its own for
	// the bodies' chunks, so that megabytes of them never queue ahead of
	// events, jobs and acks on the main connection. The counts still use
	// the js given to Open.
	Bulk   jetstream.JetStream
	Logger zerolog.Logger
}

// Store reads and writes event bodies kept out of the message path. It is
// safe for concurrent use; one per process is enough.
type Store struct {
	js    jetstream.JetStream
	obs   jetstream.ObjectStore
	refs  jetstream.Stream
	cfg   Config
	log   zerolog.Logger
	enc   *zstd.Encoder
	dec   *zstd.Decoder
	cache *lru

	mu     sync.Mutex
	flight map[string]*call

	reads, hits, shared atomic.Int64
}

type call struct {
	done chan struct{}
	b    []byte
	err  error
}

// Open creates the bucket and the counter stream, or updates them to cfg
// (every process runs it at start), and returns a Store.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = bus.DefaultDuplicateWindow
	}
	if cfg.InlineBytes <= 0 {
		cfg.InlineBytes = DefaultInlineBytes
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if mp := int(js.Conn().MaxPayload()); mp > 2*envelopeRoom && cfg.InlineBytes > mp-envelopeRoom {
		cfg.Logger.Warn().Int("inline_bytes", cfg.InlineBytes).Int("max_payload", mp).
			Msg("inline payload threshold lowered below the server's max_payload")
		cfg.InlineBytes = mp - envelopeRoom
	}
	s := &Store{js: js, cfg: cfg, log: cfg.Logger, cache: newLRU(cfg.CacheBytes), flight: map[string]*call{}}
	if err := s.Ensure(ctx); err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(cfg.MaxBytes)))
	if err != nil {
		return nil, err
	}
	s.enc, s.dec = enc, dec
	return s, nil
}

// Ensure creates the bucket and the counter stream, or updates them to the
// Store's configuration. Open runs it; a process runs it again when it finds
// them deleted while it runs, so that large events are accepted again
// without a restart.
func (s *Store) Ensure(ctx context.Context) error {
	bulk := s.cfg.Bulk
	if bulk == nil {
		bulk = s.js
	}
	obs, err := bulk.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      bus.PayloadBucket,
		Description: "Event bodies above the inline threshold, referenced by events (payload_ref)",
		TTL:         s.cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    s.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("payload bucket %s: %w", bus.PayloadBucket, err)
	}
	refs, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              bus.StreamPayloadRefs,
		Description:       "Per stored event body: how many jobs still need it (counters)",
		Subjects:          []string{bus.PayloadRefsPrefix + "*"},
		Retention:         jetstream.LimitsPolicy,
		MaxAge:            s.cfg.TTL,
		MaxMsgsPerSubject: 1,
		Storage:           jetstream.FileStorage,
		Replicas:          s.cfg.Replicas,
		Duplicates:        s.cfg.DuplicateWindow,
		AllowMsgCounter:   true,
		AllowDirect:       true,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", bus.StreamPayloadRefs, err)
	}
	if s.obs == nil { // Open: the Store is not shared yet
		// Later calls keep the first handles: they address the bucket and
		// the stream by name, so they work with the recreated ones.
		s.obs, s.refs = obs, refs
	}
	return nil
}

// Streams names the streams Ensure creates, for a process that watches
// for their deletion.
func Streams() []string {
	return []string{"OBJ_" + bus.PayloadBucket, bus.StreamPayloadRefs}
}

// InlineBytes is the largest body that stays inside the event.
func (s *Store) InlineBytes() int { return s.cfg.InlineBytes }

// MaxBytes is the largest body accepted.
func (s *Store) MaxBytes() int { return s.cfg.MaxBytes }

// Stats counts what this Store read.
type Stats struct {
	// Reads are object store reads; Hits are cache hits; Shared are gets
	// that waited for another caller's read of the same body.
	Reads, Hits, Shared int64
	// CacheBytes is what the cache holds.
	CacheBytes int64
}

// Stats returns the counts so far.
func (s *Store) Stats() Stats {
	return Stats{Reads: s.reads.Load(), Hits: s.hits.Load(), Shared: s.shared.Load(), CacheBytes: s.cache.bytes()}
}

// Put stores data, the event's JSON exactly as sent, for tenant under a new
// key "<tenant>/<id>", compressed when that saves more than 10 %. It
// returns once JetStream stored every chunk. The caller must not modify
// data afterwards: it is cached as is.
func (s *Store) Put(ctx context.Context, tenant string, data []byte) (*heraldv1.PayloadRef, error) {
	if !event.IsToken(tenant) {
		return nil, fmt.Errorf("%w: tenant %q", ErrInvalid, tenant)
	}
	if len(data) > s.cfg.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), s.cfg.MaxBytes)
	}
	body, encoding := s.compress(data)
	key := tenant + "/" + event.NewID("pl")
	meta := jetstream.ObjectMeta{Name: key}
	if encoding != EncodingIdentity {
		meta.Headers = nats.Header{HeaderEncoding: []string{encoding}}
	}
	if _, err := s.obs.Put(ctx, meta, bytes.NewReader(body)); err != nil {
		// Chunks of a failed put are purged by the client, or expire.
		s.deleteObject(context.WithoutCancel(ctx), key)
		return nil, fmt.Errorf("store event body: %w", err)
	}
	stored.WithLabelValues(encodingLabel(encoding)).Inc()
	storedBytes.WithLabelValues("data").Add(float64(len(data)))
	storedBytes.WithLabelValues("stored").Add(float64(len(body)))
	s.cache.add(key, data)
	return &heraldv1.PayloadRef{Bucket: bus.PayloadBucket, Key: key, Size: int64(len(data)), Encoding: encoding}, nil
}

// compress returns data zstd-compressed when that saves more than 10 %,
// else data itself. A large body is probed on its first 64 KiB first, so
// incompressible data (media, ciphertext, base64 of either) costs little.
func (s *Store) compress(data []byte) ([]byte, string) {
	const minLen, probeLen = 1 << 10, 64 << 10
	if len(data) < minLen {
		return data, EncodingIdentity
	}
	if len(data) > 4*probeLen {
		if p := s.enc.EncodeAll(data[:probeLen], nil); len(p)*10 > probeLen*9 {
			return data, EncodingIdentity
		}
	}
	c := s.enc.EncodeAll(data, make([]byte, 0, len(data)/2))
	if len(c)*10 > len(data)*9 {
		return data, EncodingIdentity
	}
	return c, EncodingZstd
}

// Delete removes a stored body at once, whatever its count: for a body
// whose event was never stored. A body already gone is fine.
func (s *Store) Delete(ctx context.Context, ref *heraldv1.PayloadRef) error {
	if err := s.check(ref); err != nil {
		return err
	}
	return s.remove(ctx, ref.Key)
}

func (s *Store) remove(ctx context.Context, key string) error {
	s.cache.remove(key)
	err := s.obs.Delete(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete event body %s: %w", key, err)
	}
	if err == nil {
		removed.Inc()
	}
	return nil
}

func (s *Store) deleteObject(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.remove(ctx, key); err != nil {
		s.log.Warn().Err(err).Str("payload_key", key).Msg("event body not deleted; the bucket's TTL will remove it")
	}
}

// check accepts references to this bucket only: an event cannot make
// Herald read any other bucket.
func (s *Store) check(ref *heraldv1.PayloadRef) error {
	if ref == nil || ref.Key == "" {
		return fmt.Errorf("%w: empty reference", ErrInvalid)
	}
	if ref.Bucket != "" && ref.Bucket != bus.PayloadBucket {
		return fmt.Errorf("%w: bucket %q is not %s", ErrInvalid, ref.Bucket, bus.PayloadBucket)
	}
	return nil
}

func gone(ref *heraldv1.PayloadRef) error {
	return fmt.Errorf("%w: %s/%s was removed after its last delivery, or expired after the events retention (HERALD_EVENTS_RETENTION)",
		ErrGone, bus.PayloadBucket, ref.Key)
}

// Get returns the decoded body ref names. Bodies are cached (up to the
// configured bytes, least recently used out first), and concurrent gets of
// one body share one read. The returned slice is shared: do not modify it.
func (s *Store) Get(ctx context.Context, ref *heraldv1.PayloadRef) ([]byte, error) {
	if err := s.check(ref); err != nil {
		return nil, err
	}
	key := ref.Key
	if b, ok := s.cache.get(key); ok {
		s.hits.Add(1)
		gets.WithLabelValues("cache").Inc()
		return b, s.matches(ref, b)
	}
	s.mu.Lock()
	if b, ok := s.cache.get(key); ok { // a read ended meanwhile
		s.mu.Unlock()
		s.hits.Add(1)
		gets.WithLabelValues("cache").Inc()
		return b, s.matches(ref, b)
	}
	c, inFlight := s.flight[key]
	if !inFlight {
		c = &call{done: make(chan struct{})}
		s.flight[key] = c
		// The read outlives any one caller's ctx: others wait for it.
		go func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			c.b, c.err = s.read(rctx, key)
			cancel()
			if c.err == nil {
				s.cache.add(key, c.b)
			}
			s.mu.Lock()
			delete(s.flight, key)
			s.mu.Unlock()
			close(c.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if inFlight {
		s.shared.Add(1)
		gets.WithLabelValues("shared").Inc()
	}
	if errors.Is(c.err, ErrGone) {
		return nil, gone(ref)
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.b, s.matches(ref, c.b)
}

// matches checks a body against the size its event recorded.
func (s *Store) matches(ref *heraldv1.PayloadRef, b []byte) error {
	if ref.Size > 0 && int64(len(b)) != ref.Size {
		return fmt.Errorf("%w: %s is %d bytes, the event recorded %d", ErrInvalid, ref.Key, len(b), ref.Size)
	}
	return nil
}

// read reads and decodes one object.
func (s *Store) read(ctx context.Context, key string) ([]byte, error) {
	res, err := s.obs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, ErrGone
	}
	if err != nil {
		return nil, fmt.Errorf("read event body %s: %w", key, err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return nil, fmt.Errorf("read event body %s: %w", key, err)
	}
	if info.Size > uint64(s.cfg.MaxBytes)+envelopeRoom {
		return nil, fmt.Errorf("%w: %s stores %d bytes, limit %d", ErrTooLarge, key, info.Size, s.cfg.MaxBytes)
	}
	raw := bytes.NewBuffer(make([]byte, 0, info.Size))
	if _, err := io.Copy(raw, res); err != nil {
		return nil, fmt.Errorf("read event body %s: %w", key, err)
	}
	s.reads.Add(1)
	gets.WithLabelValues("store").Inc()
	switch enc := strings.ToLower(info.Headers.Get(HeaderEncoding)); enc {
	case EncodingIdentity, "identity":
		if raw.Len() > s.cfg.MaxBytes {
			return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, key, raw.Len(), s.cfg.MaxBytes)
		}
		return raw.Bytes(), nil
	case EncodingZstd:
		b, err := s.dec.DecodeAll(raw.Bytes(), nil)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, fmt.Errorf("%w: %s decodes to more than %d bytes", ErrTooLarge, key, s.cfg.MaxBytes)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: zstd: %v", ErrInvalid, key, err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("%w: %s has %s %q; only zstd is understood", ErrInvalid, key, HeaderEncoding, enc)
	}
}

// Resolve checks a body a producer stored itself (the NATS large-payload
// protocol) and returns its reference: the key must be under "<tenant>/",
// the object must exist, and it must hold (after decoding) valid UTF-8 JSON
// other than null, no larger than the maximum. Errors matching ErrInvalid
// are the producer's; others may pass.
func (s *Store) Resolve(ctx context.Context, tenant, key string) (*heraldv1.PayloadRef, error) {
	if !event.IsToken(tenant) || !strings.HasPrefix(key, tenant+"/") || len(key) == len(tenant)+1 {
		return nil, fmt.Errorf("%w: key %q is not under %q", ErrInvalid, key, tenant+"/")
	}
	ref := &heraldv1.PayloadRef{Bucket: bus.PayloadBucket, Key: key}
	data, err := s.Get(ctx, ref)
	if errors.Is(err, ErrGone) {
		return nil, fmt.Errorf("%w: no object %q in bucket %s", ErrInvalid, key, bus.PayloadBucket)
	}
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	if !utf8.Valid(data) || !json.Valid(trimmed) || len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		s.cache.remove(key)
		return nil, fmt.Errorf("%w: object %q is not a JSON value (other than null) in UTF-8", ErrInvalid, key)
	}
	info, err := s.obs.GetInfo(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("event body %s: %w", key, err)
	}
	ref.Size = int64(len(data))
	ref.Encoding = strings.ToLower(info.Headers.Get(HeaderEncoding))
	return ref, nil
}

// Hold records that jobs jobs need the body (the router, before it
// publishes them). No job at all removes the body at once. Holding the same
// body again with the same number (a redelivered event) counts once.
func (s *Store) Hold(ctx context.Context, ref *heraldv1.PayloadRef, jobs int) error {
	if err := s.check(ref); err != nil {
		return err
	}
	if jobs <= 0 {
		return s.remove(ctx, ref.Key)
	}
	_, _, err := s.count(ctx, ref, jobs, "hold:"+strconv.Itoa(jobs))
	return err
}

// Retain records that n more jobs need the body (a resend), under id (the
// same id counts once). It fails with ErrGone when the body was removed.
func (s *Store) Retain(ctx context.Context, ref *heraldv1.PayloadRef, n int, id string) error {
	if err := s.check(ref); err != nil {
		return err
	}
	if n <= 0 {
		return nil
	}
	val, dup, err := s.count(ctx, ref, n, "retain:"+id)
	if err != nil {
		return err
	}
	_, ierr := s.obs.GetInfo(ctx, ref.Key)
	exists := ierr == nil
	if ierr != nil && !errors.Is(ierr, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("event body %s: %w", ref.Key, ierr)
	}
	if !dup && (val-int64(n) <= 0 || !exists) {
		// Released (or expired) before this: take the count back.
		if _, _, err := s.count(ctx, ref, -n, "unretain:"+id); err != nil {
			s.log.Warn().Err(err).Str("payload_key", ref.Key).Msg("retain not taken back")
		}
		return gone(ref)
	}
	if !exists {
		return gone(ref)
	}
	return nil
}

// Release records that one job no longer needs the body (it was delivered,
// or its endpoint deleted), under id: the same id counts once. The last
// release removes the body.
func (s *Store) Release(ctx context.Context, ref *heraldv1.PayloadRef, id string) error {
	if err := s.check(ref); err != nil {
		return err
	}
	val, dup, err := s.count(ctx, ref, -1, "release:"+id)
	if err != nil || dup || val > 0 {
		return err
	}
	return s.remove(ctx, ref.Key)
}

// Count returns how many jobs need the body now (0 when none or unknown).
func (s *Store) Count(ctx context.Context, ref *heraldv1.PayloadRef) (int64, error) {
	if err := s.check(ref); err != nil {
		return 0, err
	}
	m, err := s.refs.GetLastMsgForSubject(ctx, bus.PayloadRefsPrefix+refSubject(ref.Key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return parseCounter(m.Data)
}

func parseCounter(b []byte) (int64, error) {
	var v struct {
		Val string `json:"val"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("counter value %q: %w", b, err)
	}
	return strconv.ParseInt(v.Val, 10, 64)
}

// count adds delta to the body's counter under a dedupe id and returns the
// new value, or dup when the same id was counted before (within the
// duplicate window).
func (s *Store) count(ctx context.Context, ref *heraldv1.PayloadRef, delta int, id string) (int64, bool, error) {
	subject := refSubject(ref.Key)
	m := nats.NewMsg(bus.PayloadRefsPrefix + subject)
	m.Header.Set("Nats-Incr", strconv.Itoa(delta))
	// (Counter increments may not carry an expected stream.)
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithMsgID(subject+":"+id))
	if err != nil {
		return 0, false, fmt.Errorf("count jobs of event body %s: %w", ref.Key, err)
	}
	if ack.Duplicate {
		return 0, true, nil
	}
	v, err := strconv.ParseInt(ack.Value, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("count jobs of event body %s: counter value %q: %w", ref.Key, ack.Value, err)
	}
	return v, false, nil
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// refSubject is the counter subject token of a key: keys may hold
// characters subjects may not.
func refSubject(key string) string {
	h := sha256.Sum256([]byte(bus.PayloadBucket + "\x00" + key))
	return b32.EncodeToString(h[:])[:32]
}

func encodingLabel(e string) string {
	if e == EncodingIdentity {
		return "identity"
	}
	return e
}

// lru is a cache of decoded bodies bounded in bytes.
type lru struct {
	mu    sync.Mutex
	max   int64
	size  int64
	order *list.List // front: most recently used
	items map[string]*list.Element
}

type lruEntry struct {
	key string
	b   []byte
}

func newLRU(max int64) *lru {
	return &lru{max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry).b, true
}

func (c *lru) add(key string, b []byte) {
	n := int64(len(b))
	if n > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.size -= int64(len(e.Value.(*lruEntry).b))
		e.Value.(*lruEntry).b = b
		c.size += n
		c.order.MoveToFront(e)
	} else {
		c.items[key] = c.order.PushFront(&lruEntry{key: key, b: b})
		c.size += n
	}
	for c.size > c.max {
		last := c.order.Back()
		ent := last.Value.(*lruEntry)
		c.order.Remove(last)
		delete(c.items, ent.key)
		c.size -= int64(len(ent.b))
	}
	cacheBytes.Set(float64(c.size))
}

func (c *lru) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.order.Remove(e)
		delete(c.items, key)
		c.size -= int64(len(e.Value.(*lruEntry).b))
		cacheBytes.Set(float64(c.size))
	}
}

func (c *lru) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}
