package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// duplicateError is a member name that appears twice in one object.
// encoding/json keeps the last value without a word, so a body such as
// {"url":"https://a.example","url":"http://10.0.0.1"} would mean something
// else to Herald than to whatever checked it first; RFC 8259 leaves the
// behaviour undefined and I-JSON (RFC 7493) forbids it.
func duplicateError(key, at string) error {
	if at == "" {
		return fmt.Errorf("duplicate key %q (each key may appear once)", key)
	}
	return fmt.Errorf("duplicate key %q in %s (each key may appear once)", key, at)
}

// level is one object or array the scan is inside.
type level struct {
	object   bool
	names    map[string]struct{} // an object's member names so far; nil when not checked
	label    string              // where it is in its parent: a member name or [i]
	last     string              // an object's current member name
	index    int                 // an array's current element
	wantName bool                // an object's next string is a member name
}

// duplicateKey finds the first member name that appears twice in one
// object of b, which must be valid JSON (it is not checked again). It
// returns the name and where its object is: "" for the outermost value,
// else a path such as headers or items[2].meta. Objects nested deeper
// than depth (1: the outermost only; 0: no limit) are scanned past
// without being checked, and without allocating.
func duplicateKey(b []byte, depth int) (key, at string, found bool) {
	var stack []level
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			l := level{object: c == '{', wantName: c == '{'}
			if checked := depth == 0 || len(stack) < depth; checked {
				if l.object {
					l.names = map[string]struct{}{}
				}
				if n := len(stack); n > 0 {
					if p := &stack[n-1]; p.object {
						l.label = p.last
					} else {
						l.label = "[" + strconv.Itoa(p.index) + "]"
					}
				}
			}
			stack = append(stack, l)
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if top := &stack[len(stack)-1]; top.object {
				top.wantName = true
			} else {
				top.index++
			}
		case '"':
			start := i
			for i++; b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			n := len(stack)
			if n == 0 || !stack[n-1].wantName {
				continue
			}
			top := &stack[n-1]
			top.wantName = false
			if top.names == nil {
				continue
			}
			name := unquote(b[start : i+1])
			if _, dup := top.names[name]; dup {
				return name, path(stack), true
			}
			top.names[name] = struct{}{}
			top.last = name
		}
	}
	return "", "", false
}

// unquote decodes a JSON string, so that "n\u0061me" and "name" are the
// same name.
func unquote(q []byte) string {
	if bytes.IndexByte(q, '\\') < 0 {
		return string(q[1 : len(q)-1])
	}
	var s string
	_ = json.Unmarshal(q, &s) // valid JSON: cannot fail
	return s
}

// path names where the innermost level of stack is: member names joined
// by dots, array indexes in brackets.
func path(stack []level) string {
	var b strings.Builder
	for _, l := range stack[1:] {
		if b.Len() > 0 && !strings.HasPrefix(l.label, "[") {
			b.WriteByte('.')
		}
		b.WriteString(l.label)
	}
	return b.String()
}
