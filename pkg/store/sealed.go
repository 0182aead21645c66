package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/heraldhq/herald/pkg/seal"
	"github.com/nats-io/nats.go/jetstream"
)

// encode is the JSON written to key. An endpoint's secrets are sealed
// (WithSealer), bound to the key, so a sealed secret copied under another
// endpoint's key does not open.
func (s *Store) encode(key string, v any) ([]byte, error) {
	switch e := v.(type) {
	case *Endpoint:
		sealed, err := SealEndpoint(s.sealer, *e, key)
		if err != nil {
			return nil, err
		}
		return json.Marshal(sealed)
	case Endpoint:
		return s.encode(key, &e)
	}
	return json.Marshal(v)
}

// decode reads the JSON stored under key into v, opening an endpoint's
// secrets.
func (s *Store) decode(key string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	if e, ok := v.(*Endpoint); ok {
		return OpenEndpoint(s.sealer, e, key)
	}
	return nil
}

// SealEndpoint returns a copy of e whose secrets and custom header values
// are sealed by sl in context (for the store, the endpoint's KV key). e is
// left as it is. A nil sl leaves them in clear. Header values are sealed
// because they often carry the receiver's own credentials (an API key, a
// bearer token); each is bound to its header's name as well, so a sealed
// value moved to another header does not open.
func SealEndpoint(sl *seal.Sealer, e Endpoint, context string) (Endpoint, error) {
	var err error
	if e.Secret, err = sl.Seal(e.Secret, context); err != nil {
		return Endpoint{}, fmt.Errorf("secret: %w", err)
	}
	if len(e.Headers) > 0 {
		h := make(map[string]string, len(e.Headers))
		for k, v := range e.Headers {
			if h[k], err = sl.Seal(v, headerContext(context, k)); err != nil {
				return Endpoint{}, fmt.Errorf("header %s: %w", k, err)
			}
		}
		e.Headers = h
	}
	if len(e.OldSecrets) > 0 {
		e.OldSecrets = slices.Clone(e.OldSecrets)
		for i := range e.OldSecrets {
			if e.OldSecrets[i].Secret, err = sl.Seal(e.OldSecrets[i].Secret, context); err != nil {
				return Endpoint{}, fmt.Errorf("old secret: %w", err)
			}
		}
	}
	return e, nil
}

// OpenEndpoint opens e's sealed secrets and header values in place. Plaintext secrets (written
// before encryption was enabled) are kept as they are. A secret sealed under
// a key sl does not hold is an error naming the key id: an endpoint must
// never be delivered to unsigned, or signed with the wrong secret, because
// its secret could not be read.
func OpenEndpoint(sl *seal.Sealer, e *Endpoint, context string) error {
	var err error
	if e.Secret, err = sl.Open(e.Secret, context); err != nil {
		return fmt.Errorf("%w: endpoint %s: %w", ErrSealed, e.ID, err)
	}
	if len(e.OldSecrets) > 0 {
		old := slices.Clone(e.OldSecrets)
		for i := range old {
			if old[i].Secret, err = sl.Open(old[i].Secret, context); err != nil {
				return fmt.Errorf("%w: endpoint %s, previous secret: %w", ErrSealed, e.ID, err)
			}
		}
		e.OldSecrets = old
	}
	if len(e.Headers) > 0 {
		h := make(map[string]string, len(e.Headers))
		for k, v := range e.Headers {
			if h[k], err = sl.Open(v, headerContext(context, k)); err != nil {
				return fmt.Errorf("%w: endpoint %s, header %s: %w", ErrSealed, e.ID, k, err)
			}
		}
		e.Headers = h
	}
	return nil
}

// headerContext binds a sealed header value to its endpoint and its name.
func headerContext(context, name string) string { return context + "\x00header:" + name }

// ErrSealed reports a record whose secrets could not be opened: sealed under
// a key that is not configured, or corrupt.
var ErrSealed = errors.New("endpoint secret cannot be decrypted")

// Reseal rewrites every endpoint whose secrets are not sealed under the
// current key (plaintext from before encryption was enabled, or sealed
// under an old key), and purges the earlier revisions of every key it
// rewrote, so that the bucket keeps no copy of a secret in clear or under a
// retired key. It returns how many endpoints it rewrote. Concurrent writers
// are safe: each rewrite is compare-and-set. Endpoints that no configured
// key opens are skipped and reported in the error, after the others are done.
//
// A pass that found nothing left to do is recorded in the bucket (a key
// per encryption key id), so later starts skip the scan. Without a sealer
// it does nothing.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	if s.sealer == nil {
		return 0, nil
	}
	done := resealedPrefix + s.sealer.KeyID()
	if _, err := s.kv.Get(ctx, done); err == nil {
		return 0, nil
	}
	keys, err := s.keys(ctx, endpointPrefix+">")
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, key := range keys {
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("load %s: %w", key, err)
		}
		var raw Endpoint
		if err := json.Unmarshal(entry.Value(), &raw); err != nil {
			errs = append(errs, fmt.Errorf("decode %s: %w", key, err))
			continue
		}
		if s.sealedCurrent(raw) {
			continue
		}
		var e Endpoint
		err = s.update(ctx, key, &e, func() error { return nil })
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n++
		if err := s.purgeHistory(ctx, key); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if _, err := s.kv.Put(ctx, done, []byte(s.now().UTC().Format(time.RFC3339))); err != nil {
			errs = append(errs, fmt.Errorf("record reseal: %w", err))
		}
	}
	return n, errors.Join(errs...)
}

// resealedPrefix starts the keys recording a finished Reseal per key id.
// v2: header values are sealed too, so a pass recorded before that (plain
// "meta.resealed.<key id>") runs once more.
const resealedPrefix = "meta.resealed.v2."

func (s *Store) sealedCurrent(e Endpoint) bool {
	if !s.sealer.Current(e.Secret) && e.Secret != "" {
		return false
	}
	for _, o := range e.OldSecrets {
		if !s.sealer.Current(o.Secret) && o.Secret != "" {
			return false
		}
	}
	for _, v := range e.Headers {
		if !s.sealer.Current(v) && v != "" {
			return false
		}
	}
	return true
}

// purgeHistory drops every revision of key but the latest.
func (s *Store) purgeHistory(ctx context.Context, key string) error {
	st, err := s.js.Stream(ctx, "KV_"+Bucket)
	if err != nil {
		return fmt.Errorf("purge history of %s: %w", key, err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+Bucket+"."+key), jetstream.WithPurgeKeep(1)); err != nil {
		return fmt.Errorf("purge history of %s: %w", key, err)
	}
	return nil
}
