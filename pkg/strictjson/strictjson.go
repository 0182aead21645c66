// Package strictjson decodes JSON from outside Herald the one strict way
// every intake uses: valid UTF-8, no unknown fields, no key twice in one
// object, exactly one value and nothing after it. Its errors are written
// for the person who sent the body.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"
)

// Decode decodes b into v strictly. A key that appears twice in one
// object, at any depth, is refused, named in the error.
func Decode(b []byte, v any) error {
	if !utf8.Valid(b) {
		return errors.New("the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(describe(err))
	}
	// Token, not More: More is false before a stray '}' or ']', which
	// would let `{...}}` through.
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	if key, at, dup := duplicateKey(b, 0); dup {
		return duplicateError(key, at)
	}
	return nil
}

// Object decodes b, one JSON object, into the destinations named by its
// keys in fields (pointers, as json.Unmarshal takes them), as strictly as
// Decode: valid UTF-8, nothing after the object, no key twice, and no key
// that fields does not name (exactly: "Type" is not "type"). A key left out
// leaves its destination as it is. Duplicate keys are looked for in the
// object itself and in the values it decodes, not inside a
// *json.RawMessage value: that is passed on as sent, unread (an event's
// data is the producer's, delivered byte for byte).
//
// Unlike Decode it reads b in place, never copying it into a decoder's
// buffer (which grows by doubling): it is for bodies of megabytes, such as
// events. A *json.RawMessage destination receives the value as sent, as a
// slice of b, not a copy: b must not change while it is in use.
func Object(b []byte, fields map[string]any) error {
	if !utf8.Valid(b) {
		return errors.New("the body is not valid UTF-8")
	}
	switch t := bytes.TrimLeft(b, " \t\r\n"); {
	case len(t) == 0:
		return errors.New("the body is empty; a JSON object is expected")
	case t[0] != '{':
		return errors.New("a JSON object is expected")
	}
	values, err := members(b)
	if err != nil {
		return errors.New(describe(err))
	}
	if key, _, dup := duplicateKey(b, 1); dup {
		return duplicateError(key, "")
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first unknown field named is always the same
	for _, k := range keys {
		dst, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown field %q (unknown fields are refused)", k)
		}
		if raw, ok := dst.(*json.RawMessage); ok {
			*raw = values[k]
			continue
		}
		if key, at, dup := duplicateKey(values[k], 0); dup {
			if at != "" && !strings.HasPrefix(at, "[") {
				at = "." + at
			}
			return duplicateError(key, k+at)
		}
		if err := json.Unmarshal(values[k], dst); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return fmt.Errorf("field %q must be a JSON %s", k, te.Type.String())
			}
			return errors.New(describe(err))
		}
	}
	return nil
}

// members returns the members of the JSON object b, each value as sent.
// encoding/json hands Unmarshal's input to UnmarshalJSON in place, so the
// values are slices of b and a body of megabytes is not copied; should it
// ever hand over a buffer of its own (which it could reuse), that is
// noticed, and the values are copied instead.
func members(b []byte) (map[string][]byte, error) {
	var spans map[string]span
	if err := json.Unmarshal(b, &spans); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(spans))
	for k, v := range spans {
		if !within(b, v) {
			var copies map[string]json.RawMessage
			if err := json.Unmarshal(b, &copies); err != nil {
				return nil, err
			}
			clear(out)
			for k, v := range copies {
				out[k] = v
			}
			return out, nil
		}
		out[k] = v
	}
	return out, nil
}

// span is a JSON value as encoding/json hands it to UnmarshalJSON.
type span []byte

func (s *span) UnmarshalJSON(p []byte) error { *s = p; return nil }

// within reports whether p lies in b's memory.
func within(b, p []byte) bool {
	if len(p) == 0 || len(b) == 0 {
		return false
	}
	bp, pp := reflect.ValueOf(b).Pointer(), reflect.ValueOf(p).Pointer()
	return pp >= bp && pp+uintptr(len(p)) <= bp+uintptr(len(b))
}

func describe(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be a JSON %s", te.Field, te.Type.String())
	case errors.Is(err, io.EOF):
		return "the body is empty; a JSON object is expected"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ") + " (unknown fields are refused)"
	default:
		return err.Error()
	}
}
