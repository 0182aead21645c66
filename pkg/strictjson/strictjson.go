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
	values, dup, err := members(b)
	if err != nil {
		return errors.New(describe(err))
	}
	if dup != nil {
		return duplicateError(*dup, "")
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
		if str, ok := dst.(*string); ok && plainString(values[k]) {
			*str = string(values[k][1 : len(values[k])-1])
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

// members returns the members of the JSON object b, each value as sent (a
// slice of b, never a copy), and the first name that appears twice in it
// (dup; nil when none does). b is checked once by json.Valid and then walked once,
// without decoding: the values of a body of megabytes are neither copied
// nor read twice. An invalid b gets encoding/json's own error, so the
// error names the same byte as it always did.
func members(b []byte) (out map[string][]byte, dup *string, err error) {
	if !json.Valid(b) {
		var v map[string]json.RawMessage
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, nil, err
		}
		return nil, nil, errors.New("invalid JSON") // not reached: Valid and Unmarshal agree
	}
	out = make(map[string][]byte, 4)
	i := skipSpace(b, 0) + 1 // past '{'
	for {
		i = skipSpace(b, i)
		if b[i] == '}' {
			return out, dup, nil
		}
		end := skipString(b, i)
		name := unquote(b[i:end])
		i = skipSpace(b, end) + 1 // past ':'
		start := skipSpace(b, i)
		i = skipValue(b, start)
		if _, seen := out[name]; seen && dup == nil {
			dup = &name
		}
		out[name] = b[start:i:i]
		if i = skipSpace(b, i); b[i] == ',' {
			i++
		}
	}
}

// plainString reports whether v, a valid JSON value, is a string without
// escapes, whose bytes between the quotes are then its value.
func plainString(v []byte) bool {
	return len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v, '\\') < 0
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i]
// ('"'), which is valid JSON.
func skipString(b []byte, i int) int {
	for i++; ; i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// skipValue returns the index just past the valid JSON value starting at
// b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\r' && b[i] != '\n' {
		i++
	}
	return i
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
