package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/ratelimit"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/session"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// encryptionKeyFile is the all-in-one's generated key, next to admin-token.
const encryptionKeyFile = "encryption-key"

// errNoEncryptionKey stops a separate service that was given no key.
var errNoEncryptionKey = errors.New("HERALD_ENCRYPTION_KEY is not set: endpoint signing secrets would be stored in clear in NATS KV and Redis. " +
	"Set it to 32 random bytes in base64 (head -c32 /dev/urandom | base64), the same on every herald-ingest, herald-router and herald-sender, " +
	"or set HERALD_ALLOW_PLAINTEXT_SECRETS=true to run without encryption (not recommended)")

// secretSealer returns the sealer of endpoint secrets at rest: from
// HERALD_ENCRYPTION_KEY; for the all-in-one without it, a key generated once
// and kept in the data dir; nil (plaintext) only when the operator allowed
// it. It logs one line saying which, with the key id, never the key.
func secretSealer(cfg Config, log zerolog.Logger) (*seal.Sealer, error) {
	key := cfg.EncryptionKey
	var path string
	if key == "" {
		switch {
		case cfg.Embedded:
			var created bool
			var err error
			key, path, created, err = dataDirKey(cfg.DataDir, encryptionKeyFile, seal.Generate)
			if err != nil {
				return nil, err
			}
			defer func() {
				verb := "kept"
				if created {
					verb = "generated once and kept"
				}
				log.Info().Str("key_file", path).Msg("secrets at rest: HERALD_ENCRYPTION_KEY is not set; endpoint secrets are encrypted with a key " +
					verb + " in the data dir (back it up with the data dir: without it the secrets cannot be read)")
			}()
		case cfg.AllowPlaintextSecrets:
			log.Warn().Msg("!!! HERALD_ALLOW_PLAINTEXT_SECRETS=true and no HERALD_ENCRYPTION_KEY: endpoint signing secrets are stored IN CLEAR " +
				"in NATS KV and Redis; anyone with a backup or a dump can forge webhooks. Set HERALD_ENCRYPTION_KEY.")
			return nil, nil
		default:
			return nil, errNoEncryptionKey
		}
	}
	old := cfg.EncryptionOldKeys
	if path == "" && cfg.Embedded {
		// An all-in-one moving from its generated key to a configured one
		// still reads what the generated key sealed; the start's re-seal
		// moves it to the configured key.
		if b, err := os.ReadFile(filepath.Join(cfg.DataDir, encryptionKeyFile)); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			old = strings.TrimSpace(string(b)) + "," + old
		}
	}
	s, err := seal.Parse(key, old)
	if err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	if path == "" {
		log.Info().Str("key_id", s.KeyID()).Msg("secrets at rest: endpoint secrets are encrypted (HERALD_ENCRYPTION_KEY)")
	}
	return s, nil
}

// dataDirKey reads one of the all-in-one's keys from the data dir
// (encryptionKeyFile, portalKeyFile), generating it (mode 0600) on first
// start. An existing file is never replaced: losing the encryption key
// loses every stored secret.
func dataDirKey(dir, name string, generate func() (string, error)) (key, path string, created bool, err error) {
	path = filepath.Join(dir, name)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), path, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", path, false, fmt.Errorf("%s: %w", name, err)
	}
	key, err = generate()
	if err != nil {
		return "", path, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", path, false, fmt.Errorf("data dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process was first
		return dataDirKey(dir, name, generate)
	}
	if err != nil {
		return "", path, false, fmt.Errorf("store %s: %w", name, err)
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return "", path, false, fmt.Errorf("store %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", path, false, fmt.Errorf("store %s: %w", name, err)
	}
	return key, path, true, nil
}

// portalKeyFile is the all-in-one's generated portal signing key, next to
// encryption-key.
const portalKeyFile = "portal-key"

// portalSigner returns the signer of portal sessions: from
// HERALD_PORTAL_KEY; for the all-in-one without it, a key generated once
// and kept in the data dir; nil (the portal off) for a separate API
// process without one, since each replica would sign with a key of its
// own. Changing the key ends every session at once: that is how sessions
// are revoked. It logs which, with the key id, never the key.
func portalSigner(cfg Config, log zerolog.Logger) (*session.Signer, error) {
	key, path := cfg.PortalKey, ""
	if key == "" {
		if !cfg.Embedded {
			log.Warn().Msg("HERALD_PORTAL_KEY is not set: the webhooks portal is off (POST /v1/portal/sessions answers 503); set it to 32 random bytes in base64, the same on every herald-ingest")
			return nil, nil
		}
		var err error
		if key, path, _, err = dataDirKey(cfg.DataDir, portalKeyFile, session.Generate); err != nil {
			return nil, err
		}
	}
	s, err := session.Parse(key)
	if err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, fmt.Errorf("HERALD_PORTAL_KEY: %w", err)
	}
	e := log.Info().Str("key_id", s.KeyID())
	if path != "" {
		e = e.Str("key_file", path)
	}
	e.Msg("webhooks portal: sessions are signed with the portal key; replacing it ends every session")
	return s, nil
}

// reseal seals, in the background, the endpoint secrets still stored in
// clear or under an old key (store.Reseal), and logs what it did.
func reseal(ctx context.Context, st *store.Store, log zerolog.Logger) {
	for delay := time.Second; ; delay = min(2*delay, time.Minute) {
		n, err := st.Reseal(ctx)
		if n > 0 {
			log.Info().Int("endpoints", n).Msg("secrets at rest: re-encrypted endpoint secrets stored in clear or under an old key, and dropped their earlier revisions")
		}
		if err == nil || ctx.Err() != nil {
			return
		}
		if errors.Is(err, store.ErrSealed) {
			// Sealed under a key this process does not hold: only the
			// operator can fix that (HERALD_ENCRYPTION_OLD_KEYS).
			log.Error().Err(err).Msg("secrets at rest: endpoint secrets sealed under an unknown key cannot be read or re-encrypted")
			return
		}
		log.Error().Err(err).Msg("secrets at rest: some endpoint secrets could not be re-encrypted; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// eventRateLimit is the API's per-tenant limit of POST /v1/events, shared
// through Redis when there is one.
func eventRateLimit(cfg Config, rdb *redis.Client, log zerolog.Logger) *ratelimit.Limiter {
	var r redis.UniversalClient
	if rdb != nil {
		r = rdb
	}
	return ratelimit.New(r, cfg.RedisPrefix, cfg.TenantEventsPerSecond, cfg.TenantEventsBurst,
		ratelimit.WithLogger(log.With().Str("component", "ratelimit").Logger()))
}
