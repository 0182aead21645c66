// Package session is the token of a portal session: what a tenant's
// customer may see and do in the webhooks portal, signed by the deployment
// so that any API process can check it without a lookup.
//
// A token is
//
//	hps_<payload>.<signature>
//
// where payload is the claims as JSON in unpadded base64url, and signature
// is HMAC-SHA256 under the portal signing key of "hps_<payload>", in
// unpadded base64url. The claims carry the key's id (the first 8 bytes of
// the key's SHA-256, hex), so that a token signed by a key that was rotated
// away is told from a forged one in logs. Nothing in a token is secret:
// it grants access, so it is a credential, but it holds only ids, filters
// and display settings.
//
// Tokens are not stored: a token is valid until it expires or until the
// signing key changes. Rotating the key (HERALD_PORTAL_KEY, or the
// all-in-one's data dir file) revokes every session at once.
package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Prefix starts every session token, so that the API tells one from an
// API key (hk_) before checking it.
const Prefix = "hps_"

// KeyBytes is the size of a signing key.
const KeyBytes = 32

// Lifetimes.
const (
	DefaultTTL = time.Hour
	MinTTL     = time.Minute
	MaxTTL     = 24 * time.Hour
)

// Errors of Verify. Each wraps ErrInvalid.
var (
	ErrInvalid   = errors.New("invalid session token")
	ErrMalformed = fmt.Errorf("%w: malformed", ErrInvalid)
	ErrForged    = fmt.Errorf("%w: signature does not match", ErrInvalid)
	// ErrRevoked: signed by another key, such as one rotated away.
	ErrRevoked = fmt.Errorf("%w: signed by a key this deployment no longer uses", ErrInvalid)
	ErrExpired = fmt.Errorf("%w: expired", ErrInvalid)
)

// Theme is how the portal presents itself: the platform's name, logo and
// colour. The API checks it (https logo, #rrggbb colour) before signing.
type Theme struct {
	Name         string `json:"name,omitempty"`
	LogoURL      string `json:"logo_url,omitempty"`
	PrimaryColor string `json:"primary_color,omitempty"`
}

// Claims are what a token grants.
type Claims struct {
	// Version of the claims layout (1).
	Version int `json:"v"`
	// KeyID names the signing key (see KeyID).
	KeyID string `json:"kid"`
	// ID is random: it tells sessions apart in logs.
	ID     string `json:"jti"`
	Tenant string `json:"tn"`
	// IssuedAt and ExpiresAt are Unix seconds.
	IssuedAt  int64 `json:"iat"`
	ExpiresAt int64 `json:"exp"`
	// Endpoints, when not empty, are the only endpoints the session sees;
	// it cannot create others.
	Endpoints []string `json:"eps,omitempty"`
	// EventTypes, when not empty, are the event types (exact, prefix.*)
	// the session sees: endpoints subscribed to others are hidden, and so
	// are attempts and dead letters of other types.
	EventTypes []string `json:"types,omitempty"`
	// ReadOnly sessions may read only: every other method answers 403.
	ReadOnly bool  `json:"ro,omitempty"`
	Theme    Theme `json:"theme,omitzero"`
	// FrameAncestors are the origins that may frame the portal (CSP
	// frame-ancestors); empty means none may.
	FrameAncestors []string `json:"fa,omitempty"`
}

// Expires is when the session ends.
func (c Claims) Expires() time.Time { return time.Unix(c.ExpiresAt, 0).UTC() }

// Signer signs and verifies tokens with one key.
type Signer struct {
	key []byte
	id  string
}

// New returns a Signer with key (KeyBytes long).
func New(key []byte) (*Signer, error) {
	if len(key) != KeyBytes {
		return nil, fmt.Errorf("portal signing key: want %d bytes, have %d", KeyBytes, len(key))
	}
	return &Signer{key: append([]byte(nil), key...), id: KeyID(key)}, nil
}

// Parse returns a Signer with a key written in base64 (standard or URL,
// padded or not), as HERALD_PORTAL_KEY holds it.
func Parse(encoded string) (*Signer, error) {
	encoded = strings.TrimSpace(encoded)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(encoded); err == nil {
			return New(b)
		}
	}
	return nil, errors.New("portal signing key: not base64")
}

// Generate returns a new random key in base64, as Parse reads it.
func Generate() (string, error) {
	b := make([]byte, KeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("portal signing key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// KeyID is the id of key that tokens carry: it tells which key signed a
// token without revealing it.
func KeyID(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:8])
}

// KeyID is the id of the Signer's key.
func (s *Signer) KeyID() string { return s.id }

var b64 = base64.RawURLEncoding

// Sign returns a token for c, issued at now and valid for ttl (DefaultTTL
// when 0; ttl must be within MinTTL and MaxTTL). It sets Version, KeyID,
// ID, IssuedAt and ExpiresAt.
func (s *Signer) Sign(c Claims, now time.Time, ttl time.Duration) (string, Claims, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return "", c, fmt.Errorf("session lifetime %s: want %s to %s", ttl, MinTTL, MaxTTL)
	}
	if c.Tenant == "" {
		return "", c, errors.New("session: no tenant")
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", c, fmt.Errorf("session id: %w", err)
	}
	c.Version, c.KeyID, c.ID = 1, s.id, "ps_"+b64.EncodeToString(id)
	c.IssuedAt, c.ExpiresAt = now.Unix(), now.Add(ttl).Unix()
	body, err := json.Marshal(c)
	if err != nil {
		return "", c, err
	}
	signed := Prefix + b64.EncodeToString(body)
	return signed + "." + b64.EncodeToString(s.mac(signed)), c, nil
}

func (s *Signer) mac(signed string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// Verify checks token's signature and lifetime at now and returns its
// claims. The signature is checked before anything in the payload is
// believed, and in constant time.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	var c Claims
	signed, sig, ok := strings.Cut(token, ".")
	if !ok || !strings.HasPrefix(signed, Prefix) || len(token) > 8<<10 {
		return c, ErrMalformed
	}
	mac, err := b64.DecodeString(sig)
	if err != nil {
		return c, ErrMalformed
	}
	body, err := b64.DecodeString(signed[len(Prefix):])
	if err != nil {
		return c, ErrMalformed
	}
	if !hmac.Equal(mac, s.mac(signed)) {
		// Only now may the payload say why: a key id that is not ours
		// means a rotated key (or a token from another deployment).
		var peek struct {
			KeyID string `json:"kid"`
		}
		if json.Unmarshal(body, &peek) == nil && peek.KeyID != "" && peek.KeyID != s.id {
			return c, ErrRevoked
		}
		return c, ErrForged
	}
	if err := json.Unmarshal(body, &c); err != nil || c.Version != 1 || c.Tenant == "" {
		return Claims{}, ErrMalformed
	}
	if !now.Before(c.Expires()) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// Looks reports whether s has the form of a session token (its prefix), so
// that an authenticator sends it to Verify rather than to the key store.
func Looks(s string) bool { return strings.HasPrefix(s, Prefix) }
