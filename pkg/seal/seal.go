// Package seal encrypts secrets at rest: endpoint signing secrets in the
// configuration store (JetStream KV) and in the Redis cache, so that a
// leaked NATS backup or Redis dump reveals no usable secret.
//
// A sealed value is a string:
//
//	enc:v1:<key id>:<base64 of nonce | ciphertext>
//
// AES-256-GCM with a random 96-bit nonce. The key id is the first 8 hex
// digits of the key's SHA-256, so a value names the key that opens it and
// keys can rotate: a Sealer seals with its current key and opens values
// sealed under any key it was given (the current one and older ones). A
// value sealed under a key it does not hold fails with an error naming the
// key id, never silently.
//
// Every value is bound to a context (GCM's additional data), e.g. the
// endpoint it belongs to: a sealed secret copied onto another endpoint does
// not open there.
//
// Values that do not start with "enc:" are plaintext written before
// encryption was enabled; Open returns them as they are, and the next write
// seals them.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every sealed value. Plaintext secrets may not start with
// it (store.Endpoint.Validate refuses them), so a value is sealed exactly
// when it has the prefix.
const Prefix = "enc:"

const version = "v1"

// KeySize is the length of a key: AES-256.
const KeySize = 32

// Errors. Both are wrapped with the details (key id, version).
var (
	// ErrUnknownKey: the value was sealed under a key this Sealer does not
	// hold (set it in HERALD_ENCRYPTION_OLD_KEYS).
	ErrUnknownKey = errors.New("sealed under an unknown encryption key")
	// ErrCorrupt: the value is not a well-formed sealed value, or does not
	// authenticate (tampered, or moved to another context).
	ErrCorrupt = errors.New("sealed value is corrupt or does not belong here")
	// ErrNoKey: a sealed value was met without any key to open it.
	ErrNoKey = errors.New("sealed value found but no encryption key is configured (HERALD_ENCRYPTION_KEY)")
)

// Sealer seals with one key and opens with any of its keys. It is safe for
// concurrent use. A nil *Sealer seals nothing: Seal returns the plaintext,
// and Open returns plaintext as is and fails with ErrNoKey on a sealed
// value.
type Sealer struct {
	id    string
	aeads map[string]cipher.AEAD
}

// KeyID names a key: the first 8 hex digits of its SHA-256. It reveals
// nothing usable about the key and may be logged.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// New returns a Sealer that seals with current and opens values sealed
// under current or any of old. Every key is KeySize bytes.
func New(current []byte, old ...[]byte) (*Sealer, error) {
	s := &Sealer{aeads: map[string]cipher.AEAD{}}
	for i, k := range append([][]byte{current}, old...) {
		if len(k) != KeySize {
			what := "the encryption key"
			if i > 0 {
				what = fmt.Sprintf("old encryption key %d", i)
			}
			return nil, fmt.Errorf("%s is %d bytes; want %d (generate one with: head -c32 /dev/urandom | base64)", what, len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		id := KeyID(k)
		if i == 0 {
			s.id = id
		}
		if _, dup := s.aeads[id]; !dup {
			s.aeads[id] = aead
		}
	}
	return s, nil
}

// Parse reads keys as configured: current is one base64 key
// (HERALD_ENCRYPTION_KEY), old a comma-separated list of base64 keys
// (HERALD_ENCRYPTION_OLD_KEYS, may be empty). Errors never quote a key.
func Parse(current, old string) (*Sealer, error) {
	cur, err := ParseKey(current)
	if err != nil {
		return nil, fmt.Errorf("HERALD_ENCRYPTION_KEY: %w", err)
	}
	var olds [][]byte
	for i, f := range strings.Split(old, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := ParseKey(f)
		if err != nil {
			return nil, fmt.Errorf("HERALD_ENCRYPTION_OLD_KEYS, key %d: %w", i+1, err)
		}
		olds = append(olds, k)
	}
	return New(cur, olds...)
}

// ParseKey decodes one base64 key (standard or URL alphabet, padded or
// not) and checks its length. Errors never quote the key.
func ParseKey(v string) ([]byte, error) {
	v = strings.TrimSpace(v)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(v); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes; want %d (generate one with: head -c32 /dev/urandom | base64)", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, errors.New("not base64 (generate one with: head -c32 /dev/urandom | base64)")
}

// Generate returns a new random key, base64-encoded as HERALD_ENCRYPTION_KEY
// takes it.
func Generate() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// KeyID is the id of the key s seals with ("" for a nil Sealer).
func (s *Sealer) KeyID() string {
	if s == nil {
		return ""
	}
	return s.id
}

// IsSealed reports whether v is a sealed value (rather than plaintext).
func IsSealed(v string) bool { return strings.HasPrefix(v, Prefix) }

// ErrReserved: a plaintext starting with Prefix cannot be told from a
// sealed value, so it is refused.
var ErrReserved = errors.New("a secret must not start with \"" + Prefix + "\" (reserved for encrypted values)")

// Seal encrypts plaintext bound to context. The empty string stays empty
// (no secret). A nil Sealer returns plaintext as it is.
func (s *Sealer) Seal(plaintext, context string) (string, error) {
	if IsSealed(plaintext) {
		return "", ErrReserved
	}
	if s == nil || plaintext == "" {
		return plaintext, nil
	}
	aead := s.aeads[s.id]
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	buf = aead.Seal(buf, buf, []byte(plaintext), s.ad(context))
	return Prefix + version + ":" + s.id + ":" + base64.StdEncoding.EncodeToString(buf), nil
}

// Open decrypts a value sealed under context by any of s's keys. Plaintext
// (no "enc:" prefix) is returned as it is.
func (s *Sealer) Open(value, context string) (string, error) {
	if !IsSealed(value) {
		return value, nil
	}
	ver, rest, _ := strings.Cut(value[len(Prefix):], ":")
	if ver != version {
		return "", fmt.Errorf("%w: format %q is not known to this version of Herald", ErrCorrupt, ver)
	}
	id, data, ok := strings.Cut(rest, ":")
	if !ok || !validID(id) {
		return "", fmt.Errorf("%w: no key id", ErrCorrupt)
	}
	if s == nil {
		return "", fmt.Errorf("%w: the value was sealed under key %s", ErrNoKey, id)
	}
	aead, ok := s.aeads[id]
	if !ok {
		return "", fmt.Errorf("%w %s: add that key to HERALD_ENCRYPTION_OLD_KEYS (current key is %s)", ErrUnknownKey, id, s.id)
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return "", fmt.Errorf("%w (key %s)", ErrCorrupt, id)
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, raw[:n], raw[n:], s.ad(context))
	if err != nil {
		return "", fmt.Errorf("%w (key %s)", ErrCorrupt, id)
	}
	return string(plain), nil
}

// Current reports whether v is sealed under s's current key: false for
// plaintext and for values under an older key, which a re-seal rewrites.
func (s *Sealer) Current(v string) bool {
	if s == nil {
		return !IsSealed(v)
	}
	return strings.HasPrefix(v, Prefix+version+":"+s.id+":")
}

// ad is the additional data of a value: the format version and its context.
func (s *Sealer) ad(context string) []byte { return []byte("herald/" + version + "/" + context) }

func validID(id string) bool {
	if len(id) != 8 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}
