// Package strictjson decodes JSON from outside Herald the one strict way
// every intake uses: valid UTF-8, no unknown fields, exactly one value and
// nothing after it. Its errors are written for the person who sent the body.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Decode decodes b into v strictly.
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
	return nil
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
