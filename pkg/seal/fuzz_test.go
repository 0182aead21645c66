package seal_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/seal"
)

// FuzzOpen feeds arbitrary stored values to Open (a KV record or a Redis
// entry is outside input to the process that reads it): it never panics,
// leaves plaintext as it is, and fails only with the package's errors;
// every plaintext seals and opens back in its context only. Seeds live in
// testdata/fuzz/FuzzOpen.
func FuzzOpen(f *testing.F) {
	s, err := seal.New(key(1), key(2))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value, plaintext, context string) {
		got, err := s.Open(value, context)
		switch {
		case !seal.IsSealed(value):
			if err != nil || got != value {
				t.Fatalf("Open(plaintext %q) = %q, %v", value, got, err)
			}
		case err != nil:
			if !errors.Is(err, seal.ErrCorrupt) && !errors.Is(err, seal.ErrUnknownKey) {
				t.Fatalf("Open(%q): %v is not ErrCorrupt or ErrUnknownKey", value, err)
			}
		}
		v, err := s.Seal(plaintext, context)
		if strings.HasPrefix(plaintext, seal.Prefix) {
			if !errors.Is(err, seal.ErrReserved) {
				t.Fatalf("Seal(%q) = %q, %v; want ErrReserved", plaintext, v, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Seal(%q): %v", plaintext, err)
		}
		if plaintext != "" && (!s.Current(v) || len(plaintext) > 8 && strings.Contains(v[strings.LastIndex(v, ":")+1:], plaintext)) {
			t.Fatalf("Seal(%q) = %q", plaintext, v)
		}
		if back, err := s.Open(v, context); err != nil || back != plaintext {
			t.Fatalf("Open(Seal(%q)) = %q, %v", plaintext, back, err)
		}
		if plaintext != "" {
			if _, err := s.Open(v, context+"x"); !errors.Is(err, seal.ErrCorrupt) {
				t.Fatalf("a value sealed for %q opened for %q", context, context+"x")
			}
		}
	})
}
