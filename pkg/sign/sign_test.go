package sign_test

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/pkg/sign"
)

// Fixed secrets, so failures are reproducible.
var (
	stdOld = "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-key-0123456789abcdef"))
	stdNew = "whsec_" + base64.StdEncoding.EncodeToString([]byte("new-key-0123456789abcdef"))
	edOld  = edSecret(1)
	edNew  = edSecret(2)
)

func edSecret(b byte) string {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = b
	}
	return "whsk_" + base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed))
}

func testMessage(now time.Time) sign.Message {
	return sign.Message{ID: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", Timestamp: now, Body: []byte(`{"type":"user.created","data":{"id":1}}`)}
}

func mustSign(t testing.TB, scheme sign.Scheme, msg sign.Message, secrets ...string) http.Header {
	t.Helper()
	s, err := sign.New(scheme, secrets...)
	if err != nil {
		t.Fatalf("New(%q): %v", scheme, err)
	}
	h := http.Header{}
	if err := s.Sign(h, msg); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return h
}

func TestParseScheme(t *testing.T) {
	tests := []struct {
		in      string
		want    sign.Scheme
		wantErr error
	}{
		{"", sign.Standard, nil},
		{"standard", sign.Standard, nil},
		{"STANDARD", sign.Standard, nil},
		{"github", sign.GitHub, nil},
		{"GitHub", sign.GitHub, nil},
		{"hex", sign.Hex, nil},
		{"ed25519", sign.Ed25519, nil},
		{"none", sign.None, nil},
		{"hmac", "", sign.ErrUnknownScheme},
		{" standard", "", sign.ErrUnknownScheme},
	}
	for _, tt := range tests {
		got, err := sign.ParseScheme(tt.in)
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("ParseScheme(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		scheme  sign.Scheme
		secrets []string
		wantErr error
	}{
		{"standard", sign.Standard, []string{stdOld}, nil},
		{"standard rotation", sign.Standard, []string{stdOld, stdNew}, nil},
		{"standard no prefix", sign.Standard, []string{strings.TrimPrefix(stdOld, "whsec_")}, nil},
		{"standard bad base64", sign.Standard, []string{"whsec_not*base64"}, sign.ErrInvalidSecret},
		{"standard empty key", sign.Standard, []string{"whsec_"}, sign.ErrInvalidSecret},
		{"standard second bad", sign.Standard, []string{stdOld, "whsec_%%"}, sign.ErrInvalidSecret},
		{"standard none", sign.Standard, nil, sign.ErrNoSecret},
		{"github", sign.GitHub, []string{"It's a Secret to Everybody"}, nil},
		{"github empty", sign.GitHub, []string{""}, sign.ErrInvalidSecret},
		{"github none", sign.GitHub, nil, sign.ErrNoSecret},
		{"hex", sign.Hex, []string{"s3cret"}, nil},
		{"hex none", sign.Hex, nil, sign.ErrNoSecret},
		{"ed25519", sign.Ed25519, []string{edOld, edNew}, nil},
		{"ed25519 whsec", sign.Ed25519, []string{stdOld}, sign.ErrInvalidSecret},
		{"ed25519 short", sign.Ed25519, []string{"whsk_" + base64.StdEncoding.EncodeToString(make([]byte, 32))}, sign.ErrInvalidSecret},
		{"ed25519 public half wrong", sign.Ed25519, []string{"whsk_" + base64.StdEncoding.EncodeToString(make([]byte, 64))}, sign.ErrInvalidSecret},
		{"ed25519 none", sign.Ed25519, nil, sign.ErrNoSecret},
		{"none", sign.None, nil, nil},
		{"none with secret", sign.None, []string{stdOld}, sign.ErrInvalidSecret},
		{"unknown", "rot13", []string{stdOld}, sign.ErrUnknownScheme},
		{"empty scheme", "", []string{stdOld}, sign.ErrUnknownScheme},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sign.New(tt.scheme, tt.secrets...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New: err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && s.Scheme() != tt.scheme {
				t.Errorf("Scheme() = %q, want %q", s.Scheme(), tt.scheme)
			}
			for _, secret := range tt.secrets {
				if err != nil && strings.Contains(err.Error(), secret) && secret != "" {
					t.Errorf("error %q leaks the secret", err)
				}
			}
		})
	}
}

// TestStandardOfficialLibrary checks our Standard output with the official
// Standard Webhooks Go library, which shares no code with ours.
func TestStandardOfficialLibrary(t *testing.T) {
	msg := testMessage(time.Now())
	for _, secrets := range [][]string{{stdNew}, {stdOld, stdNew}, {strings.TrimPrefix(stdNew, "whsec_")}} {
		h := mustSign(t, sign.Standard, msg, secrets...)
		h.Set(sign.HeaderID, msg.ID)
		h.Set(sign.HeaderTimestamp, sign.FormatTimestamp(msg.Timestamp))
		for _, secret := range secrets {
			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(msg.Body, h); err != nil {
				t.Errorf("official library rejects %d-secret signature for secret %q: %v", len(secrets), secret, err)
			}
			// And its own signature is the entry we produced.
			want, err := wh.Sign(msg.ID, msg.Timestamp, msg.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(" "+h.Get(sign.HeaderSignature)+" ", " "+want+" ") {
				t.Errorf("header %q lacks official signature %q", h.Get(sign.HeaderSignature), want)
			}
		}
		wh, _ := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString([]byte("some other key")))
		if err := wh.Verify(msg.Body, h); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
			t.Errorf("official library with wrong secret: %v, want no match", err)
		}
		if err := mustOfficial(t, secrets[0]).Verify(append([]byte("x"), msg.Body...), h); err == nil {
			t.Error("official library accepts a tampered body")
		}
	}
}

func mustOfficial(t *testing.T, secret string) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

// TestStandardHeaderFormat checks the exact layout of a rotation header.
func TestStandardHeaderFormat(t *testing.T) {
	msg := testMessage(time.Unix(1700000000, 0))
	h := mustSign(t, sign.Standard, msg, stdOld, stdNew)
	entries := strings.Split(h.Get(sign.HeaderSignature), " ")
	if len(entries) != 2 {
		t.Fatalf("got %d entries in %q, want 2", len(entries), h.Get(sign.HeaderSignature))
	}
	for i, secret := range []string{stdOld, stdNew} {
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg.ID + ".1700000000." + string(msg.Body)))
		if want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)); entries[i] != want {
			t.Errorf("entry %d = %q, want %q", i, entries[i], want)
		}
	}
	if len(h) != 1 {
		t.Errorf("Sign set %d headers, want only %s: %v", len(h), sign.HeaderSignature, h)
	}
}

// TestBodyHMAC checks GitHub and Hex against HMAC-SHA256 computed here from
// the public description of each format.
func TestBodyHMAC(t *testing.T) {
	msg := testMessage(time.Unix(1700000000, 0))
	hexMAC := func(secret string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(msg.Body)
		return hex.EncodeToString(m.Sum(nil))
	}
	tests := []struct {
		scheme  sign.Scheme
		secrets []string
		want    map[string]string
	}{
		{sign.GitHub, []string{"old"}, map[string]string{"X-Hub-Signature-256": "sha256=" + hexMAC("old"), "X-Herald-Delivery": msg.ID}},
		{sign.GitHub, []string{"old", "new"}, map[string]string{"X-Hub-Signature-256": "sha256=" + hexMAC("new"), "X-Herald-Delivery": msg.ID}},
		{sign.Hex, []string{"old"}, map[string]string{"X-Signature": hexMAC("old")}},
		{sign.Hex, []string{"old", "new"}, map[string]string{"X-Signature": hexMAC("new")}},
		// The secret is used as typed, prefix and all.
		{sign.Hex, []string{stdOld}, map[string]string{"X-Signature": hexMAC(stdOld)}},
	}
	for _, tt := range tests {
		h := mustSign(t, tt.scheme, msg, tt.secrets...)
		if len(h) != len(tt.want) {
			t.Errorf("%s %v: headers %v, want %v", tt.scheme, tt.secrets, h, tt.want)
		}
		for k, v := range tt.want {
			if got := h.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s %v: %s = %q, want %q", tt.scheme, tt.secrets, k, got, v)
			}
		}
	}
}

// TestEd25519 checks Ed25519 output with crypto/ed25519 directly.
func TestEd25519(t *testing.T) {
	msg := testMessage(time.Unix(1700000000, 0))
	h := mustSign(t, sign.Ed25519, msg, edOld, edNew)
	entries := strings.Split(h.Get(sign.HeaderSignature), " ")
	if len(entries) != 2 {
		t.Fatalf("got %q, want 2 entries", h.Get(sign.HeaderSignature))
	}
	signed := []byte(msg.ID + ".1700000000." + string(msg.Body))
	for i, secret := range []string{edOld, edNew} {
		pk, err := sign.PublicKey(secret)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(pk, "whpk_"))
		if err != nil || len(pub) != ed25519.PublicKeySize || !strings.HasPrefix(pk, "whpk_") {
			t.Fatalf("PublicKey = %q, %v", pk, err)
		}
		enc, ok := strings.CutPrefix(entries[i], "v1a,")
		if !ok {
			t.Fatalf("entry %q lacks v1a,", entries[i])
		}
		sig, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(pub, signed, sig) {
			t.Errorf("entry %d does not verify with its public key", i)
		}
		if ed25519.Verify(pub, append(signed, 'x'), sig) {
			t.Errorf("entry %d verifies a tampered body", i)
		}
	}
}

func TestSignMessageChecks(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		scheme  sign.Scheme
		secret  string
		msg     sign.Message
		wantErr error
	}{
		{sign.Standard, stdOld, sign.Message{Timestamp: now}, sign.ErrInvalidMessage},
		{sign.Standard, stdOld, sign.Message{ID: "a"}, sign.ErrInvalidMessage},
		{sign.Ed25519, edOld, sign.Message{Timestamp: now}, sign.ErrInvalidMessage},
		{sign.Ed25519, edOld, sign.Message{ID: "a"}, sign.ErrInvalidMessage},
		{sign.GitHub, "s", sign.Message{Timestamp: now}, sign.ErrInvalidMessage},
		{sign.Hex, "s", sign.Message{}, nil},                                // Hex signs the body only
		{sign.Standard, stdOld, sign.Message{ID: "a", Timestamp: now}, nil}, // empty body is fine
	}
	for _, tt := range tests {
		s, err := sign.New(tt.scheme, tt.secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Sign(http.Header{}, tt.msg); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s Sign(%+v) = %v, want %v", tt.scheme, tt.msg, err, tt.wantErr)
		}
	}
}

func TestNoneSetsNothing(t *testing.T) {
	h := mustSign(t, sign.None, testMessage(time.Now()))
	if len(h) != 0 {
		t.Errorf("None set headers: %v", h)
	}
}

// TestSignReplaces checks that signing again replaces, not appends to, a
// previous signature: a retry reuses its header map.
func TestSignReplaces(t *testing.T) {
	s, _ := sign.New(sign.Standard, stdNew)
	h := http.Header{}
	msg := testMessage(time.Unix(1700000000, 0))
	_ = s.Sign(h, msg)
	first := h.Get(sign.HeaderSignature)
	msg.Timestamp = msg.Timestamp.Add(time.Minute)
	_ = s.Sign(h, msg)
	if got := h.Values(sign.HeaderSignature); len(got) != 1 || got[0] == first {
		t.Errorf("after re-signing, header = %q (first %q)", got, first)
	}
}

func TestGenerateSecret(t *testing.T) {
	for _, scheme := range []sign.Scheme{sign.Standard, sign.GitHub, sign.Hex, sign.Ed25519} {
		a, err := sign.GenerateSecret(scheme)
		if err != nil {
			t.Fatalf("GenerateSecret(%q): %v", scheme, err)
		}
		b, _ := sign.GenerateSecret(scheme)
		if a == b {
			t.Errorf("GenerateSecret(%q) repeated %q", scheme, a)
		}
		if err := sign.ValidateSecret(scheme, a); err != nil {
			t.Errorf("ValidateSecret(%q, generated) = %v", scheme, err)
		}
		switch scheme {
		case sign.Ed25519:
			if !strings.HasPrefix(a, "whsk_") {
				t.Errorf("Ed25519 secret %q lacks whsk_", a)
			}
			if _, err := sign.PublicKey(a); err != nil {
				t.Errorf("PublicKey: %v", err)
			}
		default:
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "whsec_"))
			if !strings.HasPrefix(a, "whsec_") || err != nil || len(key) != 24 {
				t.Errorf("%s secret %q: want whsec_ + base64 of 24 bytes (%v)", scheme, a, err)
			}
		}
	}
	if _, err := sign.GenerateSecret(sign.None); !errors.Is(err, sign.ErrInvalidSecret) {
		t.Errorf("GenerateSecret(None) = %v", err)
	}
	if _, err := sign.GenerateSecret("x"); !errors.Is(err, sign.ErrUnknownScheme) {
		t.Errorf("GenerateSecret(x) = %v", err)
	}
}

func TestPublicKeyErrors(t *testing.T) {
	for _, secret := range []string{"", stdOld, "whpk_AAAA", "whsk_!!", "whsk_" + base64.StdEncoding.EncodeToString(make([]byte, 64))} {
		if _, err := sign.PublicKey(secret); !errors.Is(err, sign.ErrInvalidSecret) {
			t.Errorf("PublicKey(%q) = %v, want ErrInvalidSecret", secret, err)
		}
	}
}

func TestFormatTimestamp(t *testing.T) {
	if got := sign.FormatTimestamp(time.Unix(1700000000, 999999999)); got != "1700000000" {
		t.Errorf("FormatTimestamp = %q", got)
	}
}

// TestConcurrentSign exercises the pooled hashes under -race.
func TestConcurrentSign(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		scheme  sign.Scheme
		secrets []string
	}{{sign.Standard, []string{stdOld, stdNew}}, {sign.GitHub, []string{"a", "b"}}, {sign.Hex, []string{"a"}}, {sign.Ed25519, []string{edOld}}} {
		s, err := sign.New(tc.scheme, tc.secrets...)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					msg := sign.Message{ID: "id" + strconv.Itoa(g), Timestamp: now, Body: []byte(strconv.Itoa(i))}
					h1, h2 := http.Header{}, http.Header{}
					_ = s.Sign(h1, msg)
					_ = s.Sign(h2, msg)
					for k := range h1 {
						if h1.Get(k) != h2.Get(k) {
							t.Errorf("%s: signing twice differs: %q vs %q", tc.scheme, h1.Get(k), h2.Get(k))
							return
						}
					}
				}
			})
		}
		wg.Wait()
	}
}

func BenchmarkSign(b *testing.B) {
	body := []byte(strings.Repeat(`{"k":"v"}`, 100)) // ~1 KiB, a typical event
	msg := sign.Message{ID: "01J9ZQ3W4ZB6X8Y2M5N7P9R1T3", Timestamp: time.Unix(1700000000, 0), Body: body}
	for _, bc := range []struct {
		name    string
		scheme  sign.Scheme
		secrets []string
	}{
		{"standard", sign.Standard, []string{stdNew}},
		{"standard-rotation", sign.Standard, []string{stdOld, stdNew}},
		{"github", sign.GitHub, []string{"secret"}},
		{"hex", sign.Hex, []string{"secret"}},
		{"ed25519", sign.Ed25519, []string{edNew}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := sign.New(bc.scheme, bc.secrets...)
			if err != nil {
				b.Fatal(err)
			}
			h := http.Header{}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Sign(h, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
