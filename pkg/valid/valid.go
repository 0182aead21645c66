// Package valid collects field-level validation failures so that an API can
// report every problem with a request at once (RFC 9457 "errors" member)
// instead of the first one only.
package valid

import (
	"fmt"
	"strings"
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
