package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func signer(t *testing.T, b byte) *Signer {
	t.Helper()
	s, err := New(bytes.Repeat([]byte{b}, KeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerify(t *testing.T) {
	s := signer(t, 1)
	now := time.Unix(1_800_000_000, 0)
	in := Claims{Tenant: "tn_1", Endpoints: []string{"ep_1"}, EventTypes: []string{"post.*"}, ReadOnly: true,
		Theme: Theme{Name: "Blog", PrimaryColor: "#112233"}, FrameAncestors: []string{"https://app.example"}}
	tok, out, err := s.Sign(in, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !Looks(tok) || out.ExpiresAt-out.IssuedAt != int64(DefaultTTL/time.Second) || out.KeyID != s.KeyID() || out.ID == "" {
		t.Fatalf("token %q claims %+v", tok, out)
	}
	got, err := s.Verify(tok, now.Add(DefaultTTL-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(out)
	if !bytes.Equal(a, b) {
		t.Fatalf("verified %s, signed %s", a, b)
	}
}

func TestVerifyRefuses(t *testing.T) {
	s := signer(t, 1)
	now := time.Unix(1_800_000_000, 0)
	tok, _, err := s.Sign(Claims{Tenant: "tn_1"}, now, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	signed, sig, _ := strings.Cut(tok, ".")
	// A payload changed to another tenant, under the original signature.
	other, _ := json.Marshal(Claims{Version: 1, KeyID: s.KeyID(), Tenant: "tn_2", ExpiresAt: now.Add(time.Hour).Unix()})
	forged := Prefix + b64.EncodeToString(other) + "." + sig
	rotated, _, _ := signer(t, 2).Sign(Claims{Tenant: "tn_1"}, now, time.Hour)
	for _, tc := range []struct {
		name, token string
		at          time.Time
		want        error
	}{
		{"expired", tok, now.Add(2 * time.Minute), ErrExpired},
		{"other tenant's payload", forged, now, ErrForged},
		{"signature cut", signed + "." + sig[:10], now, ErrForged},
		{"rotated key", rotated, now, ErrRevoked},
		{"no signature", signed, now, ErrMalformed},
		{"api key", "hk_abc", now, ErrMalformed},
		{"bad base64", Prefix + "!!!." + sig, now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.Verify(tc.token, tc.at)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalid) || c.Tenant != "" {
				t.Fatalf("Verify = %+v, %v; want %v", c, err, tc.want)
			}
		})
	}
}

func TestSignChecksLifetime(t *testing.T) {
	s := signer(t, 1)
	for _, ttl := range []time.Duration{time.Second, MaxTTL + time.Second} {
		if _, _, err := s.Sign(Claims{Tenant: "tn_1"}, time.Now(), ttl); err == nil {
			t.Errorf("ttl %s accepted", ttl)
		}
	}
	if _, err := Parse("c2hvcnQ="); err == nil {
		t.Error("a short key was accepted")
	}
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(k); err != nil {
		t.Fatal(err)
	}
}
