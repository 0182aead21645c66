package event_test

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/valid"
)

// FuzzParse checks that Parse never panics, that every error is either
// ErrMalformed or a list of field errors, and that an accepted event is
// fully valid, carries data exactly as sent, and came from valid UTF-8.
// Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := event.Parse(b)
		if err != nil {
			var ve valid.Errors
			if !errors.Is(err, event.ErrMalformed) && !errors.As(err, &ve) {
				t.Fatalf("Parse(%q) error %T %v is neither ErrMalformed nor valid.Errors", b, err, err)
			}
			if errors.As(err, &ve) && len(ve) == 0 {
				t.Fatalf("Parse(%q) returned an empty valid.Errors", b)
			}
			return
		}
		if verr := in.Validate(); verr != nil {
			t.Fatalf("Parse(%q) = %+v, nil but Validate() = %v", b, in, verr)
		}
		if !utf8.Valid(b) {
			t.Fatalf("Parse accepted invalid UTF-8 %q", b)
		}
		if !bytes.Contains(b, in.Data) {
			t.Fatalf("Parse(%q) data %q is not the bytes sent", b, in.Data)
		}
		// Decode must agree with Parse on what it read.
		d, derr := event.Decode(b)
		if derr != nil || d.ID != in.ID || d.Type != in.Type || d.EndpointID != in.EndpointID || !bytes.Equal(d.Data, in.Data) {
			t.Fatalf("Decode(%q) = %+v, %v; Parse gave %+v", b, d, derr, in)
		}
	})
}
