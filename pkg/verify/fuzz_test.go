package verify_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/verify"
)

var fuzzSchemes = []sign.Scheme{sign.Standard, sign.GitHub, sign.Hex, sign.Ed25519, sign.None}

// FuzzVerify checks that arbitrary headers, bodies and secrets never panic
// Verify, and that a signature made by package sign always verifies,
// whatever the id, body, key and clock skew within the tolerance.
func FuzzVerify(f *testing.F) {
	f.Add(uint8(0), "msg_1", "1700000000", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", []byte(`{"a":1}`), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", int64(0))
	f.Add(uint8(1), "", "", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", []byte("Hello, World!"), "It's a Secret to Everybody", int64(-299))
	f.Add(uint8(2), "", "", "deadbeef", []byte{}, "s", int64(299))
	f.Add(uint8(3), "evt", "17000000000", "v1a,AAAA v1,BBBB", []byte{0, 1, 2}, "whpk_AAAA", int64(1<<40))
	f.Add(uint8(4), "x", "-1", " ", []byte(nil), "", int64(-1<<40))

	f.Fuzz(func(t *testing.T, schemeN uint8, id, ts, sig string, body []byte, secret string, skew int64) {
		scheme := fuzzSchemes[int(schemeN)%len(fuzzSchemes)]
		at := verify.WithNow(func() time.Time { return now })

		// Arbitrary input: any outcome but a panic is fine.
		h := http.Header{}
		h.Set(sign.HeaderID, id)
		h.Set(sign.HeaderTimestamp, ts)
		for _, name := range []string{sign.HeaderSignature, sign.HeaderGitHub, sign.HeaderHex} {
			h.Set(name, sig)
		}
		_ = verify.Verify(scheme, h, body, []string{secret}, at)
		_ = verify.Verify(scheme, h, body, []string{secret, secret + "x"}, at, verify.WithTolerance(time.Duration(skew)))

		// A valid signature, made from the same input, always verifies.
		if scheme == sign.None {
			return
		}
		if id == "" {
			id = "evt"
		}
		send, check := fuzzSecret(scheme, secret)
		const tol = 5 * time.Minute
		when := now.Add(time.Duration(skew%int64(tol/time.Second)) * time.Second)
		s, err := sign.New(scheme, send)
		if err != nil {
			t.Fatalf("sign.New(%q, %q): %v", scheme, send, err)
		}
		h = http.Header{}
		h.Set(sign.HeaderID, id)
		h.Set(sign.HeaderTimestamp, sign.FormatTimestamp(when))
		if err := s.Sign(h, sign.Message{ID: id, Timestamp: when, Body: body}); err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if err := verify.Verify(scheme, h, body, []string{check}, at); err != nil {
			t.Fatalf("valid %s signature rejected: %v\nheaders %q\nsecret %q", scheme, err, h, check)
		}
	})
}

// fuzzSecret turns fuzz input into a valid secret for scheme, as the sender
// and the receiver hold it.
func fuzzSecret(scheme sign.Scheme, raw string) (send, check string) {
	if raw == "" {
		raw = "k"
	}
	switch scheme {
	case sign.Standard:
		s := "whsec_" + base64.StdEncoding.EncodeToString([]byte(raw))
		return s, s
	case sign.Ed25519:
		seed := sha256.Sum256([]byte(raw))
		priv := ed25519.NewKeyFromSeed(seed[:])
		return "whsk_" + base64.StdEncoding.EncodeToString(priv),
			"whpk_" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	}
	return raw, raw
}
