// Package match decides which subscriptions receive an event.
//
// Event types are dot-separated tokens such as "post.comment.added".
// An endpoint subscribes with filters: an exact type, a prefix wildcard
// "post.*" (every type below "post", at any depth), or "*" (everything).
// Event types are also used as NATS subject tokens, so their syntax is
// deliberately narrower than NATS's: no wildcards, no spaces, no empty
// tokens.
package match

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxLen is the maximum length in bytes of an event type or filter.
const MaxLen = 128

var (
	// ErrInvalidType is returned (wrapped) by ValidateType.
	ErrInvalidType = errors.New("match: invalid event type")
	// ErrInvalidFilter is returned (wrapped) by ValidateFilter.
	ErrInvalidFilter = errors.New("match: invalid filter")
)

// Matches reports whether an endpoint subscribed to filters receives
// events of type eventType. A filter matches when it equals eventType,
// when it is "*", or when it is "p.*" and eventType starts with "p." and
// has at least one more token ("post.*" matches "post.published" and
// "post.comment.added" but neither "post" nor "postal.x").
//
// Matches runs once per event per endpoint, so it does not allocate and
// does not validate; filters and types are validated when they are stored
// (ValidateFilter) and published (ValidateType).
func Matches(filters []string, eventType string) bool {
	for _, f := range filters {
		if matches(f, eventType) {
			return true
		}
	}
	return false
}

func matches(f, t string) bool {
	n := len(f)
	switch {
	case n == 1 && f[0] == '*':
		return true
	case n >= 2 && f[n-1] == '*' && f[n-2] == '.':
		prefix := f[:n-1] // keeps the dot, so "post.*" cannot match "postal.x"
		return len(t) > len(prefix) && t[:len(prefix)] == prefix
	default:
		return f == t
	}
}

// ValidateType reports whether t is a well-formed event type: 1 to MaxLen
// bytes of tokens made of [A-Za-z0-9_-], separated by single dots.
// Anything else could change the meaning of the NATS subject the type is
// embedded in ('*', '>', '.' at the ends, whitespace) or be unreadable in
// logs and dashboards (control or non-ASCII characters).
func ValidateType(t string) error {
	if t == "" {
		return fmt.Errorf("%w: empty", ErrInvalidType)
	}
	if len(t) > MaxLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidType, MaxLen)
	}
	if i, msg := checkTokens(t); msg != "" {
		return fmt.Errorf("%w %q: %s at byte %d", ErrInvalidType, t, msg, i)
	}
	return nil
}

// ValidateFilter reports whether f is a well-formed filter: "*", an event
// type (see ValidateType), or an event type followed by ".*". A wildcard
// anywhere else ("post*", "*.published", "post.*.added") is rejected
// rather than given a meaning we might regret having to keep.
func ValidateFilter(f string) error {
	if f == "" {
		return fmt.Errorf("%w: empty", ErrInvalidFilter)
	}
	if len(f) > MaxLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidFilter, MaxLen)
	}
	if f == "*" {
		return nil
	}
	prefix := f
	if n := len(f); n >= 2 && f[n-2:] == ".*" {
		prefix = f[:n-2]
	}
	if i, msg := checkTokens(prefix); msg != "" {
		return fmt.Errorf("%w %q: %s at byte %d", ErrInvalidFilter, f, msg, i)
	}
	return nil
}

// checkTokens checks that s is non-empty dot-separated tokens of
// [A-Za-z0-9_-]. On failure it returns the offending byte offset and a
// description; msg is empty when s is valid.
func checkTokens(s string) (i int, msg string) {
	if s == "" {
		return 0, "empty token"
	}
	prevDot := true // an initial dot is an empty first token
	for i = 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if prevDot {
				return i, "empty token"
			}
			prevDot = true
		case isTokenByte(c):
			prevDot = false
		case c == '*':
			return i, "wildcard not allowed here"
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			return i, fmt.Sprintf("invalid character %q", r)
		}
	}
	if prevDot {
		return len(s), "empty token"
	}
	return 0, ""
}

func isTokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}
