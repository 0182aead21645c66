// Package verify checks the signatures Herald puts on webhook requests. It is
// what receivers import: package sign writes the headers, this package reads
// them.
//
// Every comparison of a signature is constant-time, so a receiver does not
// leak how much of a forged signature was right. Several secrets may be given
// at once, so a receiver keeps accepting deliveries while a secret is
// rotated.
package verify

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
)

var (
	// ErrNoSignature means the request carries no signature for the scheme:
	// the signature header is absent, or holds no entry of the scheme's version.
	ErrNoSignature = errors.New("verify: no signature")
	// ErrSignatureMismatch means no signature matched any of the secrets:
	// the body was altered, or the secret is wrong.
	ErrSignatureMismatch = errors.New("verify: signature mismatch")
	// ErrTimestampTooOld means webhook-timestamp is further in the past than
	// the tolerance allows; the request may be a replay.
	ErrTimestampTooOld = errors.New("verify: timestamp too old")
	// ErrTimestampTooNew means webhook-timestamp is further in the future than
	// the tolerance allows.
	ErrTimestampTooNew = errors.New("verify: timestamp too new")
	// ErrMissingHeader means a header the scheme needs is absent or empty. A
	// missing signature header matches both this and ErrNoSignature.
	ErrMissingHeader = errors.New("verify: missing header")
	// ErrInvalidHeader means a header is present but malformed.
	ErrInvalidHeader = errors.New("verify: invalid header")
)

// DefaultTolerance is how far webhook-timestamp may be from now, either way,
// unless WithTolerance says otherwise. It bounds how long a captured request
// can be replayed, while allowing for clock skew and slow networks.
const DefaultTolerance = 5 * time.Minute

// maxEntries bounds the signatures considered in one webhook-signature header.
// A rotation needs two; the bound stops a forged header with thousands of
// entries from costing thousands of Ed25519 verifications.
const maxEntries = 16

// An Option configures verification.
type Option func(*options)

type options struct {
	tolerance time.Duration
	now       func() time.Time
}

// WithTolerance sets how far webhook-timestamp may be from now, either way.
// A tolerance of zero or less means DefaultTolerance, so that an unset
// configuration value never turns replay protection off.
func WithTolerance(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.tolerance = d
		}
	}
}

// WithNow sets the clock the timestamp is checked against; for tests, and for
// checking a stored request against the time it was received.
func WithNow(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// A Verifier checks requests for one scheme against a fixed set of secrets,
// decoded once. It is safe for concurrent use.
type Verifier struct {
	scheme sign.Scheme
	keys   [][]byte            // HMAC keys: Standard, GitHub, Hex
	pubs   []ed25519.PublicKey // Ed25519
	opts   options
}

// NewVerifier returns a Verifier for scheme that accepts a signature made
// with any of secrets. For Standard the secrets are "whsec_" secrets; for
// GitHub and Hex, the secret strings as configured; for Ed25519, "whpk_"
// public keys (a "whsk_" private key is accepted too, and its public key
// used). For None, no secrets are needed and every request is accepted.
func NewVerifier(scheme sign.Scheme, secrets []string, opts ...Option) (*Verifier, error) {
	v := &Verifier{scheme: scheme, opts: options{tolerance: DefaultTolerance, now: time.Now}}
	for _, o := range opts {
		o(&v.opts)
	}
	switch scheme {
	case sign.None:
		return v, nil
	case sign.Standard, sign.GitHub, sign.Hex, sign.Ed25519:
	default:
		return nil, fmt.Errorf("%w: %q", sign.ErrUnknownScheme, scheme)
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w for scheme %q", sign.ErrNoSecret, scheme)
	}
	for i, secret := range secrets {
		if err := v.addSecret(secret); err != nil {
			return nil, fmt.Errorf("verify: secret %d of %d: %w", i+1, len(secrets), err)
		}
	}
	return v, nil
}

func (v *Verifier) addSecret(secret string) error {
	switch v.scheme {
	case sign.Standard:
		if err := sign.ValidateSecret(sign.Standard, secret); err != nil {
			return err
		}
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, sign.SecretPrefix))
		v.keys = append(v.keys, key)
	case sign.GitHub, sign.Hex:
		if err := sign.ValidateSecret(v.scheme, secret); err != nil {
			return err
		}
		v.keys = append(v.keys, []byte(secret))
	case sign.Ed25519:
		if strings.HasPrefix(secret, sign.PrivateKeyPrefix) {
			pk, err := sign.PublicKey(secret)
			if err != nil {
				return err
			}
			secret = pk
		}
		enc, ok := strings.CutPrefix(secret, sign.PublicKeyPrefix)
		if !ok {
			return fmt.Errorf("%w: Ed25519 key must start with %q or %q", sign.ErrInvalidSecret, sign.PublicKeyPrefix, sign.PrivateKeyPrefix)
		}
		pub, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return fmt.Errorf("%w: %w", sign.ErrInvalidSecret, err)
		}
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 public key is %d bytes, want %d", sign.ErrInvalidSecret, len(pub), ed25519.PublicKeySize)
		}
		v.pubs = append(v.pubs, ed25519.PublicKey(pub))
	}
	return nil
}

// Verify checks a request's signature for scheme against any of secrets. For
// Standard and Ed25519 it also checks that webhook-timestamp is within the
// tolerance of now, against replay. GitHub and Hex sign only the body, so
// there is no signed timestamp to check: receivers of those schemes should
// deduplicate on X-Herald-Delivery.
//
// Verify decodes the secrets on every call; a receiver checking many
// requests can use NewVerifier once instead. See NewVerifier for what the
// secrets are for each scheme.
func Verify(scheme sign.Scheme, h http.Header, body []byte, secrets []string, opts ...Option) error {
	v, err := NewVerifier(scheme, secrets, opts...)
	if err != nil {
		return err
	}
	return v.Verify(h, body)
}

// Verify checks the request with headers h and body body.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	switch v.scheme {
	case sign.Standard, sign.Ed25519:
		return v.verifyStandard(h, body)
	case sign.GitHub:
		return v.verifyBody(h, sign.HeaderGitHub, "sha256=", body)
	case sign.Hex:
		return v.verifyBody(h, sign.HeaderHex, "", body)
	case sign.None:
		return nil
	}
	return fmt.Errorf("%w: %q", sign.ErrUnknownScheme, v.scheme)
}

// missingSignatureError reports an absent signature header. It is both
// ErrNoSignature, for callers asking whether the request was signed at all,
// and ErrMissingHeader, for callers asking which header was absent.
type missingSignatureError string

func (e missingSignatureError) Error() string {
	return "verify: no signature: missing header " + string(e)
}

func (e missingSignatureError) Unwrap() []error {
	return []error{ErrNoSignature, ErrMissingHeader}
}

// verifyStandard checks the Standard Webhooks headers, symmetric (v1) or
// asymmetric (v1a).
func (v *Verifier) verifyStandard(h http.Header, body []byte) error {
	sigs := h.Values(sign.HeaderSignature)
	if len(sigs) == 0 || (len(sigs) == 1 && sigs[0] == "") {
		return missingSignatureError(sign.HeaderSignature)
	}
	id := h.Get(sign.HeaderID)
	if id == "" {
		return fmt.Errorf("%w %s", ErrMissingHeader, sign.HeaderID)
	}
	tsText := h.Get(sign.HeaderTimestamp)
	if tsText == "" {
		return fmt.Errorf("%w %s", ErrMissingHeader, sign.HeaderTimestamp)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	// Only the canonical form is accepted, so that the text signed and the
	// text received are the same bytes.
	if err != nil || strconv.FormatInt(ts, 10) != tsText {
		return fmt.Errorf("%w %s: %q is not unix seconds", ErrInvalidHeader, sign.HeaderTimestamp, tsText)
	}
	if err := v.checkTime(ts); err != nil {
		return err
	}

	version, sigLen := "v1", sha256.Size
	if v.scheme == sign.Ed25519 {
		version, sigLen = "v1a", ed25519.SignatureSize
	}
	// The signed content is id.timestamp.body. HMAC can take it in pieces;
	// Ed25519 needs it contiguous, built only once a candidate is found.
	var macs [][]byte
	var msg []byte
	entries, wellFormed := 0, false
	var sig [ed25519.SignatureSize]byte
	for _, value := range sigs {
		for entry := range strings.FieldsSeq(value) {
			ver, enc, ok := strings.Cut(entry, ",")
			if !ok || ver != version {
				continue // other versions are for other verifiers
			}
			if entries++; entries > maxEntries {
				return fmt.Errorf("%w %s: more than %d %s signatures", ErrInvalidHeader, sign.HeaderSignature, maxEntries, version)
			}
			if len(enc) != base64.StdEncoding.EncodedLen(sigLen) {
				continue
			}
			n, err := base64.StdEncoding.Decode(sig[:], []byte(enc))
			if err != nil || n != sigLen {
				continue
			}
			wellFormed = true
			if v.scheme == sign.Ed25519 {
				if msg == nil {
					msg = make([]byte, 0, len(id)+len(tsText)+2+len(body))
					msg = append(append(append(append(append(msg, id...), '.'), tsText...), '.'), body...)
				}
				for _, pub := range v.pubs {
					if ed25519.Verify(pub, msg, sig[:n]) {
						return nil
					}
				}
				continue
			}
			if macs == nil {
				macs = make([][]byte, len(v.keys))
				for i, key := range v.keys {
					m := hmac.New(sha256.New, key)
					m.Write([]byte(id))
					m.Write([]byte{'.'})
					m.Write([]byte(tsText))
					m.Write([]byte{'.'})
					m.Write(body)
					macs[i] = m.Sum(nil)
				}
			}
			for _, mac := range macs {
				if hmac.Equal(mac, sig[:n]) {
					return nil
				}
			}
		}
	}
	switch {
	case entries == 0:
		return fmt.Errorf("%w: no %q entry in %s", ErrNoSignature, version, sign.HeaderSignature)
	case !wellFormed:
		// Every entry of our version was malformed: say so, rather than
		// blaming the secret.
		return fmt.Errorf("%w %s: malformed %q entry", ErrInvalidHeader, sign.HeaderSignature, version)
	}
	return ErrSignatureMismatch
}

func (v *Verifier) checkTime(ts int64) error {
	// time.Unix overflows near the ends of int64; clamped, the difference
	// saturates and an absurd timestamp is simply too old or too new.
	const limit = 1 << 62
	ts = min(max(ts, -limit), limit)
	now := v.opts.now()
	t := time.Unix(ts, 0)
	if d := now.Sub(t); d > v.opts.tolerance {
		return fmt.Errorf("%w: %s is %s old", ErrTimestampTooOld, sign.HeaderTimestamp, d.Truncate(time.Second))
	}
	if d := t.Sub(now); d > v.opts.tolerance {
		return fmt.Errorf("%w: %s is %s ahead", ErrTimestampTooNew, sign.HeaderTimestamp, d.Truncate(time.Second))
	}
	return nil
}

// verifyBody checks a hex HMAC-SHA256 of the body in header name, after prefix.
func (v *Verifier) verifyBody(h http.Header, name, prefix string, body []byte) error {
	value := h.Get(name)
	if value == "" {
		return missingSignatureError(name)
	}
	enc, ok := strings.CutPrefix(value, prefix)
	if !ok {
		return fmt.Errorf("%w %s: want prefix %q", ErrInvalidHeader, name, prefix)
	}
	var sig [sha256.Size]byte
	if len(enc) != hex.EncodedLen(sha256.Size) {
		return fmt.Errorf("%w %s: want %d hex digits, got %d", ErrInvalidHeader, name, hex.EncodedLen(sha256.Size), len(enc))
	}
	if _, err := hex.Decode(sig[:], []byte(enc)); err != nil {
		return fmt.Errorf("%w %s: %w", ErrInvalidHeader, name, err)
	}
	for _, key := range v.keys {
		m := hmac.New(sha256.New, key)
		m.Write(body)
		if hmac.Equal(m.Sum(nil), sig[:]) {
			return nil
		}
	}
	return ErrSignatureMismatch
}
