package valid

import (
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	for _, c := range []struct {
		in    string
		lines bool
		want  string // part of the answer; "" for none
	}{
		{"my blog", false, ""},
		{"Café ☕ 日本語 👩‍💻", false, ""}, // a zero-width joiner is not a control
		{"עברית and English", false, ""},
		{"two\nlines\tand a tab", true, ""},
		{"a\x00b", false, "control characters (U+0000 at byte 1)"},
		{"a\x00b", true, "U+0000"},
		{"a\x1b[31mred", false, "U+001B"},
		{"a\u0085b", false, "U+0085"}, // C1 control
		{"line\nbreak", false, "U+000A"},
		{"invoice\u202Efdp.exe", false, "bidirectional control characters (U+202E at byte 7)"},
		{"x\u2066y\u2069", true, "U+2066"},
		{"x\u200Fy", false, "U+200F"},
	} {
		got := Text(c.in, c.lines)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("Text(%q, %v) = %q, want %q", c.in, c.lines, got, c.want)
		}
	}
}
