package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/seal"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

func mustNew(t *testing.T, cur []byte, old ...[]byte) *seal.Sealer {
	t.Helper()
	s, err := seal.New(cur, old...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := mustNew(t, key(1))
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	v, err := s.Seal(secret, "endpoint.tn_1.ep_1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "enc:v1:"+seal.KeyID(key(1))+":") || strings.Contains(v, secret) || strings.Contains(v, "MfKQ9r8G") {
		t.Fatalf("sealed value %q: want enc:v1:<key id>:<base64> without the secret", v)
	}
	if len(seal.KeyID(key(1))) != 8 || s.KeyID() != seal.KeyID(key(1)) {
		t.Fatalf("key id %q", s.KeyID())
	}
	again, _ := s.Seal(secret, "endpoint.tn_1.ep_1")
	if again == v {
		t.Fatal("two seals of one secret are equal: the nonce is not random")
	}
	got, err := s.Open(v, "endpoint.tn_1.ep_1")
	if err != nil || got != secret {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if !s.Current(v) {
		t.Fatal("Current(fresh value) = false")
	}
	if empty, err := s.Seal("", "x"); empty != "" || err != nil {
		t.Fatalf("Seal(\"\") = %q, %v; want empty", empty, err)
	}
}

func TestOpenRefusesOtherContextAndTampering(t *testing.T) {
	s := mustNew(t, key(1))
	v, _ := s.Seal("s3cret", "endpoint.tn_1.ep_1")
	if _, err := s.Open(v, "endpoint.tn_2.ep_1"); !errors.Is(err, seal.ErrCorrupt) {
		t.Fatalf("Open in another context: %v, want ErrCorrupt", err)
	}
	raw, _ := base64.StdEncoding.DecodeString(v[strings.LastIndex(v, ":")+1:])
	raw[len(raw)-1] ^= 1
	bad := v[:strings.LastIndex(v, ":")+1] + base64.StdEncoding.EncodeToString(raw)
	if _, err := s.Open(bad, "endpoint.tn_1.ep_1"); !errors.Is(err, seal.ErrCorrupt) {
		t.Fatalf("Open(tampered): %v, want ErrCorrupt", err)
	}
	for _, v := range []string{"enc:", "enc:v1:", "enc:v1:zz:AAAA", "enc:v1:0011aabb:!!", "enc:v1:0011aabb:AAAA", "enc:v9:0011aabb:AAAA"} {
		if _, err := s.Open(v, "c"); err == nil {
			t.Errorf("Open(%q) = nil error", v)
		}
	}
}

func TestRotation(t *testing.T) {
	oldS := mustNew(t, key(1))
	v, _ := oldS.Seal("s3cret", "c")

	newOnly := mustNew(t, key(2))
	_, err := newOnly.Open(v, "c")
	if !errors.Is(err, seal.ErrUnknownKey) || !strings.Contains(err.Error(), seal.KeyID(key(1))) {
		t.Fatalf("Open under an unknown key: %v; want ErrUnknownKey naming %s", err, seal.KeyID(key(1)))
	}
	both := mustNew(t, key(2), key(1))
	if got, err := both.Open(v, "c"); err != nil || got != "s3cret" {
		t.Fatalf("Open with the old key configured = %q, %v", got, err)
	}
	if both.Current(v) {
		t.Fatal("Current(value under the old key) = true")
	}
	nv, _ := both.Seal("s3cret", "c")
	if !strings.Contains(nv, ":"+seal.KeyID(key(2))+":") {
		t.Fatalf("sealed with %q, want the current key", nv)
	}
}

func TestNilSealerAndPlaintext(t *testing.T) {
	var s *seal.Sealer
	if v, err := s.Seal("plain", "c"); v != "plain" || err != nil {
		t.Fatalf("nil Seal = %q, %v", v, err)
	}
	if v, err := s.Open("plain", "c"); v != "plain" || err != nil {
		t.Fatalf("nil Open = %q, %v", v, err)
	}
	sealed, _ := mustNew(t, key(1)).Seal("x", "c")
	if _, err := s.Open(sealed, "c"); !errors.Is(err, seal.ErrNoKey) || !strings.Contains(err.Error(), seal.KeyID(key(1))) {
		t.Fatalf("nil Open(sealed) = %v, want ErrNoKey naming the key", err)
	}
	// Plaintext from before encryption reads as it is.
	if v, err := mustNew(t, key(1)).Open("whsec_abc", "c"); v != "whsec_abc" || err != nil {
		t.Fatalf("Open(plaintext) = %q, %v", v, err)
	}
	if _, err := mustNew(t, key(1)).Seal("enc:looks-sealed", "c"); !errors.Is(err, seal.ErrReserved) {
		t.Fatalf("Seal(enc:...) = %v, want ErrReserved", err)
	}
}

func TestParse(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString(key(1))
	k2 := base64.RawURLEncoding.EncodeToString(key(2))
	s, err := seal.Parse(" "+k1+"\n", k2+", ,"+k1)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != seal.KeyID(key(1)) {
		t.Fatalf("current key id %s", s.KeyID())
	}
	gen, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seal.Parse(gen, ""); err != nil {
		t.Fatalf("Parse(Generate()) = %v", err)
	}
	short := base64.StdEncoding.EncodeToString(key(3)[:16])
	for _, tc := range []struct{ cur, old, want string }{
		{"", "", "HERALD_ENCRYPTION_KEY"},
		{short, "", "16 bytes"},
		{"not base64 at all!", "", "not base64"},
		{k1, short, "HERALD_ENCRYPTION_OLD_KEYS, key 1"},
	} {
		_, err := seal.Parse(tc.cur, tc.old)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error containing %q", tc.cur, tc.old, err, tc.want)
			continue
		}
		if (tc.cur != "" && strings.Contains(err.Error(), tc.cur)) || (tc.old != "" && strings.Contains(err.Error(), tc.old)) {
			t.Errorf("Parse error %q quotes the key", err)
		}
	}
}
