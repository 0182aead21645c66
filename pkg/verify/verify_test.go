package verify_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/verify"
)

var (
	now    = time.Unix(1700000000, 0)
	atNow  = verify.WithNow(func() time.Time { return now })
	body   = []byte(`{"type":"invoice.paid","data":{"id":"inv_1"}}`)
	stdOld = "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-key-0123456789abcdef"))
	stdNew = "whsec_" + base64.StdEncoding.EncodeToString([]byte("new-key-0123456789abcdef"))
	edOld  = edSecret(1)
	edNew  = edSecret(2)
)

func edSecret(b byte) string {
	seed := bytes.Repeat([]byte{b}, ed25519.SeedSize)
	return "whsk_" + base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed))
}

func publicKey(t testing.TB, secret string) string {
	t.Helper()
	pk, err := sign.PublicKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// signed returns the headers a Herald sender puts on a request.
func signed(t testing.TB, scheme sign.Scheme, ts time.Time, body []byte, secrets ...string) http.Header {
	t.Helper()
	s, err := sign.New(scheme, secrets...)
	if err != nil {
		t.Fatalf("sign.New(%q): %v", scheme, err)
	}
	msg := sign.Message{ID: "evt_01J9ZQ3W4ZB6X8Y2M5N7P9R1T3", Timestamp: ts, Body: body}
	h := http.Header{}
	h.Set(sign.HeaderID, msg.ID)
	h.Set(sign.HeaderTimestamp, sign.FormatTimestamp(ts))
	if err := s.Sign(h, msg); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return h
}

// schemeCase describes, per scheme, an old and a new secret as the sender
// holds them and as the receiver holds them.
type schemeCase struct {
	scheme             sign.Scheme
	sendOld, sendNew   string
	checkOld, checkNew string
	timed              bool // signs webhook-timestamp
}

func schemeCases(t testing.TB) []schemeCase {
	return []schemeCase{
		{sign.Standard, stdOld, stdNew, stdOld, stdNew, true},
		{sign.GitHub, "gh-old", "gh-new", "gh-old", "gh-new", false},
		{sign.Hex, "hex-old", "hex-new", "hex-old", "hex-new", false},
		{sign.Ed25519, edOld, edNew, publicKey(t, edOld), publicKey(t, edNew), true},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range schemeCases(t) {
		t.Run(string(c.scheme), func(t *testing.T) {
			// Before rotation: one secret.
			h := signed(t, c.scheme, now, body, c.sendOld)
			if err := verify.Verify(c.scheme, h, body, []string{c.checkOld}, atNow); err != nil {
				t.Errorf("single secret: %v", err)
			}
			// During rotation the receiver may hold either or both secrets.
			h = signed(t, c.scheme, now, body, c.sendOld, c.sendNew)
			if err := verify.Verify(c.scheme, h, body, []string{c.checkNew}, atNow); err != nil {
				t.Errorf("rotation, receiver has new: %v", err)
			}
			if err := verify.Verify(c.scheme, h, body, []string{c.checkOld, c.checkNew}, atNow); err != nil {
				t.Errorf("rotation, receiver has both: %v", err)
			}
			if c.timed {
				// One entry per secret: a receiver still on the old secret
				// keeps working.
				if err := verify.Verify(c.scheme, h, body, []string{c.checkOld}, atNow); err != nil {
					t.Errorf("rotation, receiver has old: %v", err)
				}
			} else {
				// One value, made with the newest secret.
				if err := verify.Verify(c.scheme, h, body, []string{c.checkOld}, atNow); !errors.Is(err, verify.ErrSignatureMismatch) {
					t.Errorf("rotation, receiver has old only: %v, want mismatch", err)
				}
			}
			// After the old secret is dropped, only the new one verifies.
			h = signed(t, c.scheme, now, body, c.sendNew)
			if err := verify.Verify(c.scheme, h, body, []string{c.checkNew}, atNow); err != nil {
				t.Errorf("after rotation, new: %v", err)
			}
			if err := verify.Verify(c.scheme, h, body, []string{c.checkOld}, atNow); !errors.Is(err, verify.ErrSignatureMismatch) {
				t.Errorf("after rotation, old: %v, want mismatch", err)
			}
			// An empty body is signed and verified like any other.
			h = signed(t, c.scheme, now, nil, c.sendNew)
			if err := verify.Verify(c.scheme, h, nil, []string{c.checkNew}, atNow); err != nil {
				t.Errorf("empty body: %v", err)
			}
		})
	}
}

func TestEd25519AcceptsPrivateKey(t *testing.T) {
	h := signed(t, sign.Ed25519, now, body, edNew)
	if err := verify.Verify(sign.Ed25519, h, body, []string{edNew}, atNow); err != nil {
		t.Error(err)
	}
}

func TestStandardWithoutPrefix(t *testing.T) {
	h := signed(t, sign.Standard, now, body, stdNew)
	if err := verify.Verify(sign.Standard, h, body, []string{strings.TrimPrefix(stdNew, "whsec_")}, atNow); err != nil {
		t.Error(err)
	}
}

func TestNoneAcceptsAnything(t *testing.T) {
	if err := verify.Verify(sign.None, http.Header{}, body, nil); err != nil {
		t.Error(err)
	}
}

func TestFailures(t *testing.T) {
	for _, c := range schemeCases(t) {
		sigHeader := sign.HeaderSignature
		switch c.scheme {
		case sign.GitHub:
			sigHeader = sign.HeaderGitHub
		case sign.Hex:
			sigHeader = sign.HeaderHex
		}
		fresh := func() http.Header { return signed(t, c.scheme, now, body, c.sendNew) }
		with := func(name, value string) http.Header {
			h := fresh()
			h.Set(name, value)
			return h
		}
		without := func(name string) http.Header {
			h := fresh()
			h.Del(name)
			return h
		}
		tests := []struct {
			name    string
			h       http.Header
			body    []byte
			secrets []string
			opts    []verify.Option
			wantErr []error
		}{
			{name: "tampered body", h: fresh(), body: []byte(`{"type":"invoice.paid","data":{"id":"inv_2"}}`), wantErr: []error{verify.ErrSignatureMismatch}},
			{name: "truncated body", h: fresh(), body: body[:len(body)-1], wantErr: []error{verify.ErrSignatureMismatch}},
			{name: "wrong secret", h: fresh(), secrets: []string{c.checkOld}, wantErr: []error{verify.ErrSignatureMismatch}},
			{name: "missing signature", h: without(sigHeader), wantErr: []error{verify.ErrNoSignature, verify.ErrMissingHeader}},
			{name: "empty signature", h: with(sigHeader, ""), wantErr: []error{verify.ErrNoSignature, verify.ErrMissingHeader}},
			{name: "no secrets", h: fresh(), secrets: []string{}, wantErr: []error{sign.ErrNoSecret}},
			{name: "invalid secret", h: fresh(), secrets: []string{c.checkNew, ""}, wantErr: []error{sign.ErrInvalidSecret}},
		}
		if c.timed {
			old := signed(t, c.scheme, now.Add(-5*time.Minute-time.Second), body, c.sendNew)
			edge := signed(t, c.scheme, now.Add(-5*time.Minute), body, c.sendNew)
			future := signed(t, c.scheme, now.Add(5*time.Minute+time.Second), body, c.sendNew)
			tests = append(tests, []struct {
				name    string
				h       http.Header
				body    []byte
				secrets []string
				opts    []verify.Option
				wantErr []error
			}{
				{name: "old timestamp", h: old, wantErr: []error{verify.ErrTimestampTooOld}},
				{name: "timestamp at tolerance", h: edge},
				{name: "old timestamp, wider tolerance", h: old, opts: []verify.Option{verify.WithTolerance(time.Hour)}},
				{name: "zero tolerance means default", h: old, opts: []verify.Option{verify.WithTolerance(0)}, wantErr: []error{verify.ErrTimestampTooOld}},
				{name: "narrower tolerance", h: signed(t, c.scheme, now.Add(-2*time.Second), body, c.sendNew), opts: []verify.Option{verify.WithTolerance(time.Second)}, wantErr: []error{verify.ErrTimestampTooOld}},
				{name: "future timestamp", h: future, wantErr: []error{verify.ErrTimestampTooNew}},
				{name: "ancient timestamp", h: with(sign.HeaderTimestamp, "-9223372036854775808"), wantErr: []error{verify.ErrTimestampTooOld}},
				{name: "far future timestamp", h: with(sign.HeaderTimestamp, "9223372036854775807"), wantErr: []error{verify.ErrTimestampTooNew}},
				{name: "timestamp replaced", h: with(sign.HeaderTimestamp, "1700000001"), wantErr: []error{verify.ErrSignatureMismatch}},
				{name: "id replaced", h: with(sign.HeaderID, "evt_other"), wantErr: []error{verify.ErrSignatureMismatch}},
				{name: "missing id", h: without(sign.HeaderID), wantErr: []error{verify.ErrMissingHeader}},
				{name: "missing timestamp", h: without(sign.HeaderTimestamp), wantErr: []error{verify.ErrMissingHeader}},
				{name: "timestamp not a number", h: with(sign.HeaderTimestamp, "yesterday"), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "timestamp in milliseconds", h: with(sign.HeaderTimestamp, "1700000000000"), wantErr: []error{verify.ErrTimestampTooNew}},
				{name: "timestamp with plus", h: with(sign.HeaderTimestamp, "+1700000000"), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "timestamp with leading zero", h: with(sign.HeaderTimestamp, "01700000000"), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "timestamp RFC 3339", h: with(sign.HeaderTimestamp, now.Format(time.RFC3339)), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "other version only", h: with(sigHeader, "v2,abc v1b,def"), wantErr: []error{verify.ErrNoSignature}},
				{name: "entry without comma", h: with(sigHeader, "v1"), wantErr: []error{verify.ErrNoSignature}},
				{name: "bad base64", h: with(sigHeader, versionOf(c.scheme)+",!!!!"), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "short signature", h: with(sigHeader, versionOf(c.scheme)+","+base64.StdEncoding.EncodeToString([]byte("short"))), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "malformed then valid", h: with(sigHeader, versionOf(c.scheme)+",!!!! "+fresh().Get(sigHeader))},
				{name: "valid among others", h: with(sigHeader, "v0,xyz  "+fresh().Get(sigHeader)+" v9,abc")},
				{name: "too many entries", h: with(sigHeader, strings.Repeat(versionOf(c.scheme)+","+base64.StdEncoding.EncodeToString(make([]byte, sigSize(c.scheme)))+" ", 17)+fresh().Get(sigHeader)), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "forged zero signature", h: with(sigHeader, versionOf(c.scheme)+","+base64.StdEncoding.EncodeToString(make([]byte, sigSize(c.scheme)))), wantErr: []error{verify.ErrSignatureMismatch}},
			}...)
			// The other Standard Webhooks version must not be accepted for this scheme.
			other := sign.Ed25519
			otherSecret := edNew
			if c.scheme == sign.Ed25519 {
				other, otherSecret = sign.Standard, stdNew
			}
			tests = append(tests, struct {
				name    string
				h       http.Header
				body    []byte
				secrets []string
				opts    []verify.Option
				wantErr []error
			}{name: "other scheme's signature", h: signed(t, other, now, body, otherSecret), wantErr: []error{verify.ErrNoSignature}})
		} else {
			prefix := ""
			if c.scheme == sign.GitHub {
				prefix = "sha256="
			}
			tests = append(tests, []struct {
				name    string
				h       http.Header
				body    []byte
				secrets []string
				opts    []verify.Option
				wantErr []error
			}{
				{name: "timestamp is not checked", h: with(sign.HeaderTimestamp, "1")},
				{name: "not hex", h: with(sigHeader, prefix+strings.Repeat("zz", 32)), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "short hex", h: with(sigHeader, prefix+"abcd"), wantErr: []error{verify.ErrInvalidHeader}},
				{name: "upper-case hex", h: with(sigHeader, prefix+strings.ToUpper(strings.TrimPrefix(fresh().Get(sigHeader), prefix)))},
				{name: "forged zero signature", h: with(sigHeader, prefix+strings.Repeat("0", 64)), wantErr: []error{verify.ErrSignatureMismatch}},
			}...)
			if c.scheme == sign.GitHub {
				tests = append(tests, struct {
					name    string
					h       http.Header
					body    []byte
					secrets []string
					opts    []verify.Option
					wantErr []error
				}{name: "missing sha256= prefix", h: with(sigHeader, strings.TrimPrefix(fresh().Get(sigHeader), "sha256=")), wantErr: []error{verify.ErrInvalidHeader}})
			}
		}
		for _, tt := range tests {
			t.Run(string(c.scheme)+"/"+tt.name, func(t *testing.T) {
				b := body
				if tt.body != nil {
					b = tt.body
				}
				secrets := []string{c.checkNew}
				if tt.secrets != nil {
					secrets = tt.secrets
				}
				err := verify.Verify(c.scheme, tt.h, b, secrets, append([]verify.Option{atNow}, tt.opts...)...)
				if len(tt.wantErr) == 0 {
					if err != nil {
						t.Fatalf("Verify = %v, want nil", err)
					}
					return
				}
				for _, want := range tt.wantErr {
					if !errors.Is(err, want) {
						t.Errorf("Verify = %v, want %v", err, want)
					}
				}
			})
		}
	}
}

func versionOf(s sign.Scheme) string {
	if s == sign.Ed25519 {
		return "v1a"
	}
	return "v1"
}

func sigSize(s sign.Scheme) int {
	if s == sign.Ed25519 {
		return ed25519.SignatureSize
	}
	return sha256.Size
}

func TestBadConfiguration(t *testing.T) {
	tests := []struct {
		scheme  sign.Scheme
		secrets []string
		wantErr error
	}{
		{"rot13", []string{"x"}, sign.ErrUnknownScheme},
		{"", []string{"x"}, sign.ErrUnknownScheme},
		{sign.Standard, []string{"whsec_***"}, sign.ErrInvalidSecret},
		{sign.Standard, nil, sign.ErrNoSecret},
		{sign.Ed25519, []string{stdNew}, sign.ErrInvalidSecret},
		{sign.Ed25519, []string{"whpk_" + base64.StdEncoding.EncodeToString(make([]byte, 31))}, sign.ErrInvalidSecret},
		{sign.Ed25519, []string{"whpk_%%%"}, sign.ErrInvalidSecret},
		{sign.Ed25519, []string{"whsk_" + base64.StdEncoding.EncodeToString(make([]byte, 64))}, sign.ErrInvalidSecret},
		{sign.Hex, []string{""}, sign.ErrInvalidSecret},
	}
	for _, tt := range tests {
		if _, err := verify.NewVerifier(tt.scheme, tt.secrets); !errors.Is(err, tt.wantErr) {
			t.Errorf("NewVerifier(%q, %q) = %v, want %v", tt.scheme, tt.secrets, err, tt.wantErr)
		}
	}
}

// TestIndependentSignatures builds each scheme's headers by hand, from the
// public description, so verify is not only checked against sign.
func TestIndependentSignatures(t *testing.T) {
	ts := "1700000000"
	id := "evt_1"
	mac := func(key []byte, parts ...string) []byte {
		m := hmac.New(sha256.New, key)
		for _, p := range parts {
			m.Write([]byte(p))
		}
		return m.Sum(nil)
	}
	stdKey, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(stdNew, "whsec_"))
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	tests := []struct {
		scheme sign.Scheme
		secret string
		h      http.Header
	}{
		{sign.Standard, stdNew, http.Header{"Webhook-Id": {id}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {"v1," + base64.StdEncoding.EncodeToString(mac(stdKey, id, ".", ts, ".", string(body)))}}},
		{sign.GitHub, "It's a Secret to Everybody", http.Header{"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(mac([]byte("It's a Secret to Everybody"), string(body)))}}},
		{sign.Hex, "php", http.Header{"X-Signature": {hex.EncodeToString(mac([]byte("php"), string(body)))}}},
		{sign.Ed25519, "whpk_" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)), http.Header{"Webhook-Id": {id}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {"v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(id+"."+ts+"."+string(body))))}}},
	}
	for _, tt := range tests {
		if err := verify.Verify(tt.scheme, tt.h, body, []string{tt.secret}, atNow); err != nil {
			t.Errorf("%s: %v", tt.scheme, err)
		}
	}
}

func TestMiddleware(t *testing.T) {
	var got []byte
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	handler := verify.Middleware(sign.Standard, []string{stdNew}, atNow)(next)
	tests := []struct {
		name string
		h    http.Header
		body []byte
		want int
	}{
		{"valid", signed(t, sign.Standard, now, body, stdNew), body, http.StatusNoContent},
		{"wrong secret", signed(t, sign.Standard, now, body, stdOld), body, http.StatusUnauthorized},
		{"unsigned", http.Header{}, body, http.StatusUnauthorized},
		{"tampered", signed(t, sign.Standard, now, body, stdNew), append([]byte(" "), body...), http.StatusUnauthorized},
		{"too large", signed(t, sign.Standard, now, body, stdNew), make([]byte, verify.MaxBodyBytes+1), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(tt.body))
			for k, v := range tt.h {
				r.Header[k] = v
			}
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.want, w.Body)
			}
			if tt.want == http.StatusNoContent && !bytes.Equal(got, tt.body) {
				t.Errorf("handler read %q, want the body restored", got)
			}
			if tt.want != http.StatusNoContent && got != nil {
				t.Error("handler called for a rejected request")
			}
		})
	}
}

func TestMiddlewarePanicsOnBadConfig(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Error("no panic for an invalid secret")
		}
	}()
	verify.Middleware(sign.Standard, []string{"whsec_***"})
}

func TestMiddlewareNone(t *testing.T) {
	called := false
	h := verify.Middleware(sign.None, nil)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	if !called {
		t.Error("None middleware did not call the handler")
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, c := range schemeCases(b) {
		b.Run(string(c.scheme), func(b *testing.B) {
			h := signed(b, c.scheme, now, body, c.sendNew)
			v, err := verify.NewVerifier(c.scheme, []string{c.checkOld, c.checkNew}, atNow)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Verify(h, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
