package sign

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestCachedReusesSignersPerSchemeAndSecrets(t *testing.T) {
	a, b := "whsec_"+b64.EncodeToString([]byte("first-key-first-key")), "whsec_"+b64.EncodeToString([]byte("second-key-second"))
	s1, err := Cached(Standard, a)
	if err != nil {
		t.Fatal(err)
	}
	if s2, _ := Cached(Standard, a); s2 != s1 {
		t.Fatal("same scheme and secret: want the same Signer")
	}
	if s3, _ := Cached(Standard, a, b); s3 == s1 {
		t.Fatal("a rotation (two secrets) reused the one-secret Signer")
	}
	if s4, _ := Cached(Hex, a); s4 == s1 || s4.Scheme() != Hex {
		t.Fatal("another scheme reused the Signer")
	}
	// Secret lists that concatenate alike are told apart.
	x, _ := Cached(GitHub, "ab", "c")
	y, _ := Cached(GitHub, "a", "bc")
	if x == y {
		t.Fatal(`("ab","c") and ("a","bc") share a Signer`)
	}

	// The cached Signer signs as a fresh one does.
	msg := Message{ID: "evt_1", Timestamp: time.Unix(1700000000, 0), Body: []byte(`{"a":1}`)}
	fresh, _ := New(Standard, a)
	h1, h2 := http.Header{}, http.Header{}
	_ = s1.Sign(h1, msg)
	_ = fresh.Sign(h2, msg)
	if h1.Get(HeaderSignature) != h2.Get(HeaderSignature) {
		t.Fatal("cached and fresh Signers disagree")
	}

	// Errors are returned, not cached.
	if _, err := Cached(Standard, "not base64!"); !errors.Is(err, ErrInvalidSecret) {
		t.Fatalf("bad secret: %v", err)
	}
	if _, err := Cached(Standard, "not base64!"); !errors.Is(err, ErrInvalidSecret) {
		t.Fatalf("bad secret, again: %v", err)
	}
}

func TestCachedIsBounded(t *testing.T) {
	for i := range maxCached + 100 {
		if _, err := Cached(GitHub, "secret-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	cached.RLock()
	n := len(cached.m)
	cached.RUnlock()
	if n > maxCached {
		t.Fatalf("%d Signers cached, bound %d", n, maxCached)
	}
}

func BenchmarkEd25519(b *testing.B) {
	secret, err := GenerateSecret(Ed25519)
	if err != nil {
		b.Fatal(err)
	}
	msg := Message{ID: "evt_1", Timestamp: time.Unix(1700000000, 0), Body: make([]byte, 1024)}
	b.Run("New", func(b *testing.B) {
		for b.Loop() {
			s, _ := New(Ed25519, secret)
			_ = s.Sign(http.Header{}, msg)
		}
	})
	b.Run("Cached", func(b *testing.B) {
		for b.Loop() {
			s, _ := Cached(Ed25519, secret)
			_ = s.Sign(http.Header{}, msg)
		}
	})
}
