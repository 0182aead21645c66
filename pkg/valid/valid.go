// Package valid collects field-level validation failures so that an API can
// report every problem with a request at once (RFC 9457 "errors" member)
// instead of the first one only.
package valid

import (
	"fmt"
	"strings"
	"unicode"
)

// FieldError is one rejected field. Field is a JSON pointer-like path such
// as "url" or "headers.Host".
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Errors is a list of field errors; it is an error itself when non-empty.
type Errors []FieldError

// Add records that field is invalid.
func (e *Errors) Add(field, format string, args ...any) {
	*e = append(*e, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns e as an error, or nil when nothing was recorded, so callers can
// write `return errs.Err()` without the typed-nil trap.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, f := range e {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid: " + strings.Join(parts, "; ")
}

// Text checks text that people read in a list or a settings page (a name,
// a description) for characters that have no place there: control
// characters (NUL, escape and the like; line breaks and tabs too unless
// lines is true) and the bidirectional controls (U+202E RIGHT-TO-LEFT
// OVERRIDE, the isolates, the marks), which make text display otherwise
// than it reads: "exe.txt" shown for "txt.exe" (the "Trojan Source"
// trick). It returns what is wrong, naming the first such character, or
// "" when nothing is. Invalid UTF-8 never reaches it: the API's decoder
// refuses it.
func Text(s string, lines bool) string {
	for i, r := range s {
		switch {
		case lines && (r == '\n' || r == '\t' || r == '\r'):
		case unicode.IsControl(r):
			return fmt.Sprintf("must not contain control characters (%U at byte %d)", r, i)
		case unicode.Is(unicode.Bidi_Control, r):
			return fmt.Sprintf("must not contain bidirectional control characters (%U at byte %d), which make text display otherwise than it reads", r, i)
		}
	}
	return ""
}
