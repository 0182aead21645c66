// Package sign produces the signature headers Herald puts on every webhook
// request, so that receivers can tell a delivery came from Herald and was not
// altered on the way.
//
// The package knows nothing about transport: it turns the exact bytes that
// will be sent, plus the event id and timestamp, into header values. Receivers
// use package verify, which checks what this package writes.
//
// Five schemes exist because receivers differ: Standard and Ed25519 follow
// the Standard Webhooks specification (https://www.standardwebhooks.com/),
// GitHub and Hex match what existing GitHub-style and PHP receivers already
// check, and None exists for endpoints that explicitly opt out.
package sign

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scheme names a way of signing a request.
type Scheme string

const (
	// Standard is Standard Webhooks v1 symmetric signing: the header
	// webhook-signature holds "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>".
	// The secret is "whsec_" followed by the base64 of the key bytes.
	Standard Scheme = "standard"
	// GitHub is GitHub's format: X-Hub-Signature-256 holds
	// "sha256=<hex HMAC-SHA256(secret, body)>", keyed by the secret string as
	// typed. X-Herald-Delivery carries the event id, since the body alone
	// carries no replay protection.
	GitHub Scheme = "github"
	// Hex is a bare hex HMAC-SHA256 of the body in X-Signature, keyed by the
	// secret string as typed; what PHP's hash_hmac('sha256', $body, $secret)
	// computes.
	Hex Scheme = "hex"
	// Ed25519 is Standard Webhooks asymmetric signing: webhook-signature holds
	// "v1a,<base64 Ed25519 signature of id.timestamp.body>". The secret is
	// "whsk_" followed by the base64 of the 64-byte private key; receivers get
	// the "whpk_" public key from PublicKey and need no shared secret.
	Ed25519 Scheme = "ed25519"
	// None sends no signature. It is never a default: it must be chosen
	// explicitly.
	None Scheme = "none"
)

// Header names. The Standard Webhooks names are lower case as in the
// specification; HTTP header names are case-insensitive.
const (
	HeaderID        = "webhook-id"          // event id; same on every retry
	HeaderTimestamp = "webhook-timestamp"   // unix seconds, as signed
	HeaderSignature = "webhook-signature"   // Standard and Ed25519 signatures
	HeaderGitHub    = "X-Hub-Signature-256" // GitHub signature
	HeaderHex       = "X-Signature"         // Hex signature
	HeaderDelivery  = "X-Herald-Delivery"   // event id for the GitHub scheme
)

// Secret prefixes, as in the Standard Webhooks specification.
const (
	SecretPrefix     = "whsec_" // symmetric secret
	PrivateKeyPrefix = "whsk_"  // Ed25519 private key
	PublicKeyPrefix  = "whpk_"  // Ed25519 public key
)

var (
	// ErrUnknownScheme is returned for a scheme name this package does not know.
	ErrUnknownScheme = errors.New("sign: unknown scheme")
	// ErrNoSecret is returned when a scheme that signs is given no secret.
	ErrNoSecret = errors.New("sign: no secret")
	// ErrInvalidSecret is returned for a secret the scheme cannot use.
	ErrInvalidSecret = errors.New("sign: invalid secret")
	// ErrInvalidMessage is returned when a Message lacks what the scheme signs.
	ErrInvalidMessage = errors.New("sign: invalid message")
)

// Canonical forms of the header names, computed once so that Sign can store
// into the header map directly instead of canonicalizing on every call.
var (
	canonSignature = http.CanonicalHeaderKey(HeaderSignature)
	canonGitHub    = http.CanonicalHeaderKey(HeaderGitHub)
	canonHex       = http.CanonicalHeaderKey(HeaderHex)
	canonDelivery  = http.CanonicalHeaderKey(HeaderDelivery)
)

// ParseScheme returns the scheme named s, ignoring case. The empty string
// means Standard, so that an endpoint configured without a scheme is signed
// rather than silently sent unsigned.
func ParseScheme(s string) (Scheme, error) {
	if s == "" {
		return Standard, nil
	}
	for _, sc := range []Scheme{Standard, GitHub, Hex, Ed25519, None} {
		if strings.EqualFold(s, string(sc)) {
			return sc, nil
		}
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownScheme, s)
}

// Message is what gets signed: the exact bytes sent, with the event id and
// the timestamp the sender puts in webhook-id and webhook-timestamp.
type Message struct {
	ID        string
	Timestamp time.Time
	Body      []byte
}

// FormatTimestamp formats t as the webhook-timestamp header value (unix
// seconds). Senders must use it so that the header matches what was signed.
func FormatTimestamp(t time.Time) string {
	return strconv.FormatInt(t.Unix(), 10)
}

// A Signer signs with every live secret of an endpoint: during a rotation
// there are two, the old and the new. It is safe for concurrent use.
//
// A Signer holds its secrets decoded, so reusing one per endpoint saves
// decoding (and for Ed25519, deriving the public key) on every request.
type Signer struct {
	scheme Scheme
	keys   [][]byte             // HMAC keys. Standard: one per secret; GitHub, Hex: the newest only
	privs  []ed25519.PrivateKey // Ed25519: one per secret
}

// bufPool holds scratch buffers for the signed content. Pooling them, rather
// than keyed hashes, keeps Sign cheap whether or not callers reuse Signers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBuf bounds the buffers returned to bufPool, so that one huge
// body does not pin its memory for the life of the process.
const maxPooledBuf = 64 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte, b []byte) {
	if cap(b) <= maxPooledBuf {
		*bp = b[:0]
		bufPool.Put(bp)
	}
}

// New returns a Signer for scheme using secrets, oldest first. Every secret is
// validated for the scheme. A scheme other than None needs at least one
// secret; None takes none, because secrets configured on an unsigned endpoint
// are almost certainly a mistake worth surfacing.
func New(scheme Scheme, secrets ...string) (*Signer, error) {
	s := &Signer{scheme: scheme}
	switch scheme {
	case None:
		if len(secrets) > 0 {
			return nil, fmt.Errorf("%w: scheme %q takes no secrets", ErrInvalidSecret, scheme)
		}
		return s, nil
	case Standard, GitHub, Hex, Ed25519:
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownScheme, scheme)
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w for scheme %q", ErrNoSecret, scheme)
	}
	for i, secret := range secrets {
		var err error
		switch scheme {
		case Standard:
			var key []byte
			key, err = decodeStandard(secret)
			s.keys = append(s.keys, key)
		case GitHub, Hex:
			err = ValidateSecret(scheme, secret)
		case Ed25519:
			var priv ed25519.PrivateKey
			priv, err = decodePrivate(secret)
			s.privs = append(s.privs, priv)
		}
		if err != nil {
			return nil, fmt.Errorf("secret %d of %d: %w", i+1, len(secrets), err)
		}
	}
	if scheme == GitHub || scheme == Hex {
		// These receivers compare the header against a single value computed
		// with the one secret they hold, so sending several values would not
		// help them. The newest secret is the one the rotation moves to; a
		// receiver that wants a seamless rotation accepts both its old and
		// new secret (verify.Verify takes several) before the old is dropped.
		s.keys = [][]byte{[]byte(secrets[len(secrets)-1])}
	}
	return s, nil
}

// Scheme reports the scheme s signs with.
func (s *Signer) Scheme() Scheme { return s.scheme }

// Sign sets the scheme's signature header on h for msg.
//
// Standard and Ed25519 put one entry per secret, space-separated, in a
// single webhook-signature header, so receivers holding either the old or
// the new secret accept the request during a rotation. GitHub and Hex carry
// one value, made with the newest secret (see New). GitHub also sets
// X-Herald-Delivery to msg.ID.
//
// Sign does not set webhook-id or webhook-timestamp: the sender sets those on
// every request, whatever the scheme, and must set them to msg.ID and
// FormatTimestamp(msg.Timestamp). None sets nothing.
func (s *Signer) Sign(h http.Header, msg Message) error {
	switch s.scheme {
	case Standard:
		if err := checkMessage(msg); err != nil {
			return err
		}
		h[canonSignature] = []string{s.signStandard(msg)}
	case Ed25519:
		if err := checkMessage(msg); err != nil {
			return err
		}
		h[canonSignature] = []string{s.signEd25519(msg)}
	case GitHub:
		if msg.ID == "" {
			return fmt.Errorf("%w: empty ID", ErrInvalidMessage)
		}
		h[canonGitHub] = []string{s.signBody("sha256=", msg.Body)}
		h[canonDelivery] = []string{msg.ID}
	case Hex:
		h[canonHex] = []string{s.signBody("", msg.Body)}
	case None:
	default:
		return fmt.Errorf("%w: %q", ErrUnknownScheme, s.scheme)
	}
	return nil
}

// checkMessage rejects messages whose signed content would be meaningless
// to a receiver: without an id there is no webhook-id to check, and the zero
// time would be rejected as too old anyway.
func checkMessage(msg Message) error {
	if msg.ID == "" {
		return fmt.Errorf("%w: empty ID", ErrInvalidMessage)
	}
	if msg.Timestamp.IsZero() {
		return fmt.Errorf("%w: zero Timestamp", ErrInvalidMessage)
	}
	return nil
}

// appendPrefix appends "id.timestamp." — the part of the Standard Webhooks
// signed content that precedes the body.
func appendPrefix(b []byte, msg Message) []byte {
	b = append(b, msg.ID...)
	b = append(b, '.')
	b = strconv.AppendInt(b, msg.Timestamp.Unix(), 10)
	return append(b, '.')
}

var b64 = base64.StdEncoding

func (s *Signer) signStandard(msg Message) string {
	const entryLen = len("v1,") + 44 // base64 of a 32-byte HMAC-SHA256
	var arr [2 * (entryLen + 1)]byte // room for a rotation, on the stack
	out := arr[:0]
	bp := getBuf()
	buf := *bp
	for i, key := range s.keys {
		m := hmac.New(sha256.New, key)
		buf = appendPrefix(buf[:0], msg)
		m.Write(buf)
		m.Write(msg.Body)
		buf = m.Sum(buf[:0])
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1,"...)
		out = b64.AppendEncode(out, buf)
	}
	putBuf(bp, buf)
	return string(out)
}

// signBody returns prefix + hex HMAC-SHA256 of body with the single key.
func (s *Signer) signBody(prefix string, body []byte) string {
	var arr [len("sha256=") + 2*sha256.Size]byte
	out := append(arr[:0], prefix...)
	bp := getBuf()
	m := hmac.New(sha256.New, s.keys[0])
	m.Write(body)
	sum := m.Sum((*bp)[:0])
	out = hex.AppendEncode(out, sum)
	putBuf(bp, sum)
	return string(out)
}

func (s *Signer) signEd25519(msg Message) string {
	const entryLen = len("v1a,") + 88 // base64 of a 64-byte signature
	var arr [2 * (entryLen + 1)]byte
	out := arr[:0]
	// Ed25519 hashes the message twice, so it must be contiguous.
	bp := getBuf()
	m := appendPrefix((*bp)[:0], msg)
	m = append(m, msg.Body...)
	for i, priv := range s.privs {
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1a,"...)
		out = b64.AppendEncode(out, ed25519.Sign(priv, m))
	}
	putBuf(bp, m)
	return string(out)
}

// GenerateSecret returns a new random secret for scheme. Standard, GitHub and
// Hex get "whsec_" and the base64 of 24 random bytes (GitHub and Hex use the
// whole string as the key; any string works for them). Ed25519 gets a new
// "whsk_" private key; give receivers PublicKey of it.
func GenerateSecret(scheme Scheme) (string, error) {
	switch scheme {
	case Standard, GitHub, Hex:
		key := make([]byte, 24)
		if _, err := rand.Read(key); err != nil {
			return "", fmt.Errorf("sign: generate secret: %w", err)
		}
		return SecretPrefix + b64.EncodeToString(key), nil
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", fmt.Errorf("sign: generate key: %w", err)
		}
		return PrivateKeyPrefix + b64.EncodeToString(priv), nil
	case None:
		return "", fmt.Errorf("%w: scheme %q takes no secrets", ErrInvalidSecret, scheme)
	default:
		return "", fmt.Errorf("%w: %q", ErrUnknownScheme, scheme)
	}
}

// PublicKey returns the "whpk_" public key of an Ed25519 "whsk_" secret: what
// receivers are given instead of the secret.
func PublicKey(secret string) (string, error) {
	priv, err := decodePrivate(secret)
	if err != nil {
		return "", err
	}
	return PublicKeyPrefix + b64.EncodeToString(priv.Public().(ed25519.PublicKey)), nil
}

// ValidateSecret reports whether secret can sign with scheme, so that bad
// configuration is refused when it is saved rather than at first delivery.
// Standard takes "whsec_<base64>" or bare base64 (as the official Standard
// Webhooks libraries do) of a non-empty key; GitHub and Hex take any
// non-empty string; Ed25519 takes "whsk_<base64 of a 64-byte private key>".
func ValidateSecret(scheme Scheme, secret string) error {
	switch scheme {
	case Standard:
		_, err := decodeStandard(secret)
		return err
	case GitHub, Hex:
		if secret == "" {
			return fmt.Errorf("%w: empty", ErrInvalidSecret)
		}
		return nil
	case Ed25519:
		_, err := decodePrivate(secret)
		return err
	case None:
		return fmt.Errorf("%w: scheme %q takes no secrets", ErrInvalidSecret, scheme)
	default:
		return fmt.Errorf("%w: %q", ErrUnknownScheme, scheme)
	}
}

func decodeStandard(secret string) ([]byte, error) {
	key, err := b64.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil {
		return nil, fmt.Errorf("%w: not %s<base64>: %w", ErrInvalidSecret, SecretPrefix, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidSecret)
	}
	return key, nil
}

func decodePrivate(secret string) (ed25519.PrivateKey, error) {
	enc, ok := strings.CutPrefix(secret, PrivateKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: Ed25519 secret must start with %q", ErrInvalidSecret, PrivateKeyPrefix)
	}
	key, err := b64.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSecret, err)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: Ed25519 private key is %d bytes, want %d", ErrInvalidSecret, len(key), ed25519.PrivateKeySize)
	}
	// The second half of a private key is its public key. If it does not
	// match the seed, receivers given PublicKey would reject every delivery.
	priv := ed25519.NewKeyFromSeed(key[:ed25519.SeedSize])
	if !hmac.Equal(priv, key) {
		return nil, fmt.Errorf("%w: Ed25519 public half does not match seed", ErrInvalidSecret)
	}
	return priv, nil
}
