// Package store keeps tenants, API keys and endpoints in a JetStream KV
// bucket, the store of record. Caches in front of it (package cache) may be
// lost at any time; this may not.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket that holds Herald's configuration.
const Bucket = "herald-config"

// Key layout in the bucket. Tenant and endpoint ids are subject tokens, so
// every key is a valid KV key and endpoints of one tenant share a prefix.
const (
	tenantPrefix   = "tenant."
	apiKeyPrefix   = "apikey."
	endpointPrefix = "endpoint."
)

// Errors.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("changed concurrently")
)

// Store is the configuration store of record.
type Store struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	now    func() time.Time
	sealer *seal.Sealer
}

// Option configures a Store.
type Option func(*options)

type options struct {
	replicas int
	now      func() time.Time
	sealer   *seal.Sealer
}

// WithSealer encrypts endpoint secrets (the current one and those in their
// grace period) in the bucket: they are sealed on every write and opened on
// every read, so the store's callers see plaintext and the bucket never
// holds it. Records written without a sealer (plaintext) still read, and
// are sealed by their next write or by Reseal. Without this option secrets
// are stored as given, and a sealed record fails to read (seal.ErrNoKey).
func WithSealer(s *seal.Sealer) Option { return func(o *options) { o.sealer = s } }

// WithReplicas sets the bucket's replica count when it is created.
func WithReplicas(n int) Option { return func(o *options) { o.replicas = n } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Open creates the bucket if needed and returns the store.
func Open(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	o := options{replicas: 1, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Herald tenants, API keys and endpoints",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    o.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open config bucket: %w", err)
	}
	return &Store{kv: kv, js: js, now: o.now, sealer: o.sealer}, nil
}

// KV exposes the bucket, so caches can watch it for changes.
func (s *Store) KV() jetstream.KeyValue { return s.kv }

// EndpointKey is the KV key of an endpoint; TenantOfKey inverts it.
func EndpointKey(tenant, id string) string { return endpointPrefix + tenant + "." + id }

// TenantOfKey returns the tenant an endpoint key belongs to.
func TenantOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, endpointPrefix)
	if !ok {
		return "", false
	}
	tenant, _, ok := strings.Cut(rest, ".")
	return tenant, ok
}

// WatchPattern matches every endpoint key, for cache invalidation.
const WatchPattern = endpointPrefix + ">"

// --- tenants and keys ---

// CreateTenant stores a new tenant with one API key and returns the key in
// clear: it is shown once and only its hash is kept.
func (s *Store) CreateTenant(ctx context.Context, name string) (Tenant, string, error) {
	now := s.now().UTC()
	t := Tenant{ID: event.NewID("tn"), Name: name, CreatedAt: now, UpdatedAt: now}
	if err := s.create(ctx, tenantPrefix+t.ID, t); err != nil {
		return Tenant{}, "", err
	}
	key, _, err := s.CreateAPIKey(ctx, t.ID)
	if err != nil {
		_ = s.kv.Purge(ctx, tenantPrefix+t.ID)
		return Tenant{}, "", err
	}
	return t, key, nil
}

// GetTenant returns a tenant or ErrNotFound.
func (s *Store) GetTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	if !event.IsToken(id) {
		return t, ErrNotFound
	}
	_, err := s.get(ctx, tenantPrefix+id, &t)
	return t, err
}

// ListTenants returns every tenant, ordered by id (creation time).
func (s *Store) ListTenants(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	err := s.each(ctx, tenantPrefix+"*", func(_ string, b []byte) error {
		var t Tenant
		if err := json.Unmarshal(b, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	slices.SortFunc(out, func(a, b Tenant) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

// RenameTenant changes a tenant's name.
func (s *Store) RenameTenant(ctx context.Context, id, name string) (Tenant, error) {
	var t Tenant
	err := s.update(ctx, tenantPrefix+id, &t, func() error {
		t.Name = name
		t.UpdatedAt = s.now().UTC()
		return nil
	})
	return t, err
}

// DeleteTenant removes a tenant, its keys and its endpoints. Jobs already
// queued for its endpoints find no endpoint and are dropped by the senders,
// so deleting a tenant stops its deliveries.
func (s *Store) DeleteTenant(ctx context.Context, id string) error {
	if _, err := s.GetTenant(ctx, id); err != nil {
		return err
	}
	keys, err := s.APIKeys(ctx, id)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.kv.Purge(ctx, apiKeyPrefix+k.Hash); err != nil {
			return fmt.Errorf("delete api key: %w", err)
		}
	}
	// By key, without decoding: a tenant whose secrets no configured key
	// opens can still be deleted.
	epKeys, err := s.keys(ctx, EndpointKey(id, "*"))
	if err != nil {
		return err
	}
	for _, k := range epKeys {
		if err := s.kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("delete endpoint: %w", err)
		}
		if err := s.unindexListen(ctx, id, strings.TrimPrefix(k, EndpointKey(id, ""))); err != nil {
			return err
		}
	}
	if err := s.deleteEventTypes(ctx, id); err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, tenantPrefix+id); err != nil {
		return fmt.Errorf("delete tenant: %w", err)
	}
	return nil
}

// APIKeyPrefix starts every API key, so leaked keys are easy to scan for.
const APIKeyPrefix = "hk_"

// keyPrefixLen is how much of an API key its listing shows: "hk_" and 7
// characters of its 43 random ones.
const keyPrefixLen = 10

// KeyPrefix is what may be shown of a key or token, such as one presented
// and refused, in a log: the prefix an API key's listing shows
// (APIKey.Prefix), and never more than half of a shorter token, so that a
// short admin token or a mistyped key is not logged whole.
func KeyPrefix(key string) string {
	return key[:min(keyPrefixLen, len(key)/2)]
}

// CreateAPIKey adds a key to a tenant and returns it in clear, once.
func (s *Store) CreateAPIKey(ctx context.Context, tenant string) (string, APIKey, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", APIKey{}, fmt.Errorf("api key: %w", err)
	}
	key := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(raw)
	k := APIKey{ID: event.NewID("key"), TenantID: tenant, Hash: hashKey(key), Prefix: KeyPrefix(key), CreatedAt: s.now().UTC()}
	if err := s.create(ctx, apiKeyPrefix+k.Hash, k); err != nil {
		return "", APIKey{}, err
	}
	return key, k, nil
}

// APIKeys lists a tenant's keys (hashes and prefixes only).
func (s *Store) APIKeys(ctx context.Context, tenant string) ([]APIKey, error) {
	var out []APIKey
	err := s.each(ctx, apiKeyPrefix+"*", func(_ string, b []byte) error {
		var k APIKey
		if err := json.Unmarshal(b, &k); err != nil {
			return err
		}
		if k.TenantID == tenant {
			out = append(out, k)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b APIKey) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

// ErrLastKey refuses to revoke a tenant's only API key: a tenant always
// has at least one. Create the replacement first, then revoke.
var ErrLastKey = errors.New("a tenant's last API key cannot be revoked; create another one first")

// RevokeAPIKey deletes one of a tenant's keys by its id. The last key is
// kept (ErrLastKey).
func (s *Store) RevokeAPIKey(ctx context.Context, tenant, keyID string) error {
	keys, err := s.APIKeys(ctx, tenant)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.ID == keyID {
			if len(keys) == 1 {
				return ErrLastKey
			}
			if err := s.kv.Purge(ctx, apiKeyPrefix+k.Hash); err != nil {
				return fmt.Errorf("revoke api key: %w", err)
			}
			return nil
		}
	}
	return ErrNotFound
}

// Authenticate returns the tenant that owns key, or ErrNotFound. The lookup
// is by hash, and the stored hash is compared in constant time, so neither
// the key nor its hash leaks through timing.
func (s *Store) Authenticate(ctx context.Context, key string) (string, error) {
	k, err := s.LookupAPIKey(ctx, key)
	if err != nil {
		return "", err
	}
	return k.TenantID, nil
}

// LookupAPIKey is Authenticate returning the key's record: NATS
// authorization names the connection after the key's id and hash, so that
// a revoked key's connections can be found again (APIKeyByHash).
func (s *Store) LookupAPIKey(ctx context.Context, key string) (APIKey, error) {
	if !strings.HasPrefix(key, APIKeyPrefix) || len(key) > 100 {
		return APIKey{}, ErrNotFound
	}
	h := hashKey(key)
	k, err := s.APIKeyByHash(ctx, h)
	if err != nil {
		return APIKey{}, err
	}
	if subtle.ConstantTimeCompare([]byte(k.Hash), []byte(h)) != 1 {
		return APIKey{}, ErrNotFound
	}
	return k, nil
}

// APIKeyByHash returns the live key whose hash is hash, or ErrNotFound once
// it was revoked (or its tenant deleted).
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (APIKey, error) {
	var k APIKey
	if _, err := s.get(ctx, apiKeyPrefix+hash, &k); err != nil {
		return APIKey{}, err
	}
	return k, nil
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// --- endpoints ---

// CreateEndpoint validates and stores a new endpoint, generating its id and,
// when none is given, its secret.
func (s *Store) CreateEndpoint(ctx context.Context, tenant string, e Endpoint) (Endpoint, error) {
	return s.createEndpoint(ctx, tenant, e, false)
}

// createEndpoint is CreateEndpoint; with listen, the endpoint is a
// `herald listen` one (CreateListenEndpoint).
func (s *Store) createEndpoint(ctx context.Context, tenant string, e Endpoint, listen bool) (Endpoint, error) {
	if _, err := s.GetTenant(ctx, tenant); err != nil {
		return Endpoint{}, err
	}
	now := s.now().UTC()
	e.ID = event.NewID("ep")
	e.TenantID = tenant
	if listen {
		e.URL = ListenURL(e.ID)
	}
	e.CreatedAt, e.UpdatedAt = now, now
	e.ApplyDefaults()
	if e.Secret == "" && e.Signature != sign.None {
		secret, err := sign.GenerateSecret(e.Signature)
		switch {
		case errors.Is(err, sign.ErrUnknownScheme):
			// Validate reports the scheme as a field error.
		case err != nil:
			return Endpoint{}, err
		default:
			e.Secret = secret
		}
	}
	if err := e.Validate(); err != nil {
		return Endpoint{}, err
	}
	if listen {
		if err := s.indexListen(ctx, tenant, e.ID); err != nil {
			return Endpoint{}, err
		}
	}
	if err := s.create(ctx, EndpointKey(tenant, e.ID), e); err != nil {
		return Endpoint{}, err
	}
	return e, nil
}

// GetEndpoint returns one endpoint of a tenant, or ErrNotFound: an endpoint
// of another tenant is not found, by construction of the key.
func (s *Store) GetEndpoint(ctx context.Context, tenant, id string) (Endpoint, error) {
	var e Endpoint
	if !event.IsToken(tenant) || !event.IsToken(id) {
		return e, ErrNotFound
	}
	_, err := s.get(ctx, EndpointKey(tenant, id), &e)
	return e, err
}

// ListEndpoints returns a tenant's endpoints ordered by id (creation time).
func (s *Store) ListEndpoints(ctx context.Context, tenant string) ([]Endpoint, error) {
	if !event.IsToken(tenant) {
		return nil, nil
	}
	var out []Endpoint
	err := s.each(ctx, EndpointKey(tenant, "*"), func(key string, b []byte) error {
		var e Endpoint
		if err := s.decode(key, b, &e); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	slices.SortFunc(out, func(a, b Endpoint) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

// UpdateEndpoint applies change to the stored endpoint and stores the result
// if it is valid, with optimistic concurrency: a concurrent change makes it
// retry on the fresh value rather than lose either write.
func (s *Store) UpdateEndpoint(ctx context.Context, tenant, id string, change func(*Endpoint) error) (Endpoint, error) {
	if !event.IsToken(tenant) || !event.IsToken(id) {
		return Endpoint{}, ErrNotFound
	}
	var e Endpoint
	err := s.update(ctx, EndpointKey(tenant, id), &e, func() error {
		if err := change(&e); err != nil {
			return err
		}
		e.ID, e.TenantID = id, tenant
		e.UpdatedAt = s.now().UTC()
		e.ApplyDefaults()
		return e.Validate()
	})
	return e, err
}

// DeleteEndpoint removes an endpoint; its queued jobs are dropped by senders.
// The key is purged, not just deleted: its earlier revisions (which hold
// its secrets) go too. The endpoint is not decoded first, so one whose
// secret no configured key opens can still be deleted.
func (s *Store) DeleteEndpoint(ctx context.Context, tenant, id string) error {
	if !event.IsToken(tenant) || !event.IsToken(id) {
		return ErrNotFound
	}
	key := EndpointKey(tenant, id)
	if _, err := s.kv.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return ErrNotFound
		}
		return fmt.Errorf("load %s: %w", key, err)
	}
	if err := s.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	return s.unindexListen(ctx, tenant, id)
}

// --- KV helpers ---

func (s *Store) create(ctx context.Context, key string, v any) error {
	b, err := s.encode(key, v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := s.kv.Create(ctx, key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%s: %w", key, ErrConflict)
		}
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

func (s *Store) get(ctx context.Context, key string, v any) (uint64, error) {
	entry, err := s.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, ErrNotFound
		}
		return 0, fmt.Errorf("load %s: %w", key, err)
	}
	if err := s.decode(key, entry.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return entry.Revision(), nil
}

// update loads key into v, runs change, and writes v back only if key did
// not change meanwhile; on a conflict it starts again from the fresh value.
func (s *Store) update(ctx context.Context, key string, v any, change func() error) error {
	for attempt := range 10 {
		if attempt > 0 {
			// Wait a random while before trying again: writers that retry at
			// once keep colliding in lockstep and one of them starves.
			t := time.NewTimer(time.Duration(mrand.Int64N(int64(time.Millisecond) << min(attempt, 5))))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		// Start each attempt from the zero value: json.Unmarshal merges into
		// maps and keeps fields the stored JSON omits, so a retry would
		// otherwise carry the failed attempt's (or the caller's) data over
		// and undo the concurrent change it lost to.
		reflect.ValueOf(v).Elem().SetZero()
		rev, err := s.get(ctx, key, v)
		if err != nil {
			return err
		}
		if err := change(); err != nil {
			return err
		}
		b, err := s.encode(key, v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		if _, err := s.kv.Update(ctx, key, b, rev); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) && !strings.Contains(err.Error(), "wrong last sequence") {
			return fmt.Errorf("store %s: %w", key, err)
		}
	}
	return fmt.Errorf("%s: %w", key, ErrConflict)
}

// keys lists the keys matching filter.
func (s *Store) keys(ctx context.Context, filter string) ([]string, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", filter, err)
	}
	var out []string
	for key := range lister.Keys() {
		out = append(out, key)
	}
	_ = lister.Stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", filter, err)
	}
	return out, nil
}

// each calls fn with the value of every key matching filter.
func (s *Store) each(ctx context.Context, filter string, fn func(key string, value []byte) error) error {
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return fmt.Errorf("list %s: %w", filter, err)
	}
	defer lister.Stop()
	for key := range lister.Keys() {
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return fmt.Errorf("load %s: %w", key, err)
		}
		if err := fn(key, entry.Value()); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
	}
	return nil
}

// DisableEndpoint turns an endpoint off and records why; the sender calls it
// when a receiver answers 410 Gone. Re-enabling is one PATCH.
func (s *Store) DisableEndpoint(ctx context.Context, tenant, id, reason string) error {
	_, err := s.UpdateEndpoint(ctx, tenant, id, func(e *Endpoint) error {
		e.Enabled = false
		e.DisabledReason = reason
		return nil
	})
	return err
}

// EndpointCounts is how many endpoints, across tenants, are in each state.
type EndpointCounts struct {
	Enabled  int // delivering
	Paused   int // enabled, holding their deliveries
	Disabled int // skipping their deliveries
}

// CountEndpoints counts every tenant's endpoints by state, for the
// herald_endpoints gauge. It reads the bucket's latest value of every
// endpoint key in one pass (a watch up to the present), not a read per
// key, and decodes only the two fields it counts.
func (s *Store) CountEndpoints(ctx context.Context) (EndpointCounts, error) {
	var n EndpointCounts
	w, err := s.kv.Watch(ctx, WatchPattern, jetstream.IgnoreDeletes())
	if err != nil {
		return n, fmt.Errorf("count endpoints: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("count endpoints: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return n, errors.New("count endpoints: watch closed")
			}
			if e == nil { // the present: every key was read
				return n, nil
			}
			var ep struct {
				Enabled bool `json:"enabled"`
				Paused  bool `json:"paused"`
			}
			if err := json.Unmarshal(e.Value(), &ep); err != nil {
				continue // not an endpoint Herald wrote; nothing to count
			}
			switch {
			case !ep.Enabled:
				n.Disabled++
			case ep.Paused:
				n.Paused++
			default:
				n.Enabled++
			}
		}
	}
}
