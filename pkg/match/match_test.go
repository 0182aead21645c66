package match

import (
	"errors"
	"strings"
	"testing"
)

func TestMatches(t *testing.T) {
	tests := []struct {
		filters []string
		typ     string
		want    bool
	}{
		{[]string{"post.published"}, "post.published", true},
		{[]string{"post.published"}, "post.published.v2", false},
		{[]string{"post.published"}, "post", false},
		{[]string{"post.published"}, "Post.published", false},
		{[]string{"post.*"}, "post.published", true},
		{[]string{"post.*"}, "post.comment.added", true},
		{[]string{"post.*"}, "post", false},
		{[]string{"post.*"}, "postal.x", false},
		{[]string{"post.*"}, "pos", false},
		{[]string{"post.*"}, "post.", false},
		{[]string{"post.comment.*"}, "post.comment.added", true},
		{[]string{"post.comment.*"}, "post.published", false},
		{[]string{"*"}, "post.published", true},
		{[]string{"*"}, "x", true},
		{[]string{"user.created", "post.*"}, "post.x", true},
		{[]string{"user.created", "post.*"}, "user.created", true},
		{[]string{"user.created", "post.*"}, "user.deleted", false},
		{nil, "post.published", false},
		{[]string{}, "x", false},
		{[]string{""}, "x", false},
		// Invalid filters never match valid types in surprising ways.
		{[]string{"post*"}, "post.x", false},
		{[]string{"*.published"}, "post.published", false},
		{[]string{".*"}, "x", false},
	}
	for _, tt := range tests {
		if got := Matches(tt.filters, tt.typ); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.filters, tt.typ, got, tt.want)
		}
	}
}

func TestMatchesDoesNotAllocate(t *testing.T) {
	filters := []string{"user.created", "user.deleted", "invoice.*", "post.comment.*"}
	allocs := testing.AllocsPerRun(100, func() {
		if !Matches(filters, "post.comment.added") {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Errorf("Matches allocated %v times per call, want 0", allocs)
	}
}

func TestValidateType(t *testing.T) {
	valid := []string{"a", "post", "post.published", "post.comment.added", "A-b_C.9", strings.Repeat("a", MaxLen), strings.Repeat("a.", MaxLen/2-1) + "bb"}
	for _, v := range valid {
		if err := ValidateType(v); err != nil {
			t.Errorf("ValidateType(%q) = %v, want nil", v, err)
		}
	}
	invalid := []string{
		"", ".", "post.", ".post", "post..published", "post.*", "*", "post.>", ">",
		"post published", " post", "post\t", "post\n", "pöst", "post/x", "post:x",
		"post.published\x00", strings.Repeat("a", MaxLen+1),
	}
	for _, v := range invalid {
		err := ValidateType(v)
		if err == nil {
			t.Errorf("ValidateType(%q) = nil, want error", v)
			continue
		}
		if !errors.Is(err, ErrInvalidType) {
			t.Errorf("ValidateType(%q) = %v, does not wrap ErrInvalidType", v, err)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	valid := []string{"*", "post.published", "post.*", "post.comment.*", "a", "a-b_c.*", strings.Repeat("a", MaxLen-2) + ".*"}
	for _, v := range valid {
		if err := ValidateFilter(v); err != nil {
			t.Errorf("ValidateFilter(%q) = %v, want nil", v, err)
		}
	}
	invalid := []string{
		"", ".", ".*", "*.*", "**", "post*", "post.*.added", "*.published", "post.**",
		"post..*", "post.", "post.>", ">", "post. *", "post.* ", "pöst.*",
		strings.Repeat("a", MaxLen-1) + ".*",
	}
	for _, v := range invalid {
		err := ValidateFilter(v)
		if err == nil {
			t.Errorf("ValidateFilter(%q) = nil, want error", v)
			continue
		}
		if !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("ValidateFilter(%q) = %v, does not wrap ErrInvalidFilter", v, err)
		}
	}
}

// refMatches is a deliberately naive restatement of the matching rule.
func refMatches(f, typ string) bool {
	if f == "*" {
		return true
	}
	if p, ok := strings.CutSuffix(f, ".*"); ok {
		ft := strings.Split(p, ".")
		tt := strings.Split(typ, ".")
		if len(tt) <= len(ft) {
			return false
		}
		for i := range ft {
			if ft[i] != tt[i] {
				return false
			}
		}
		return true
	}
	return f == typ
}

func FuzzMatches(f *testing.F) {
	for _, s := range [][2]string{
		{"post.*", "post.published"}, {"post.*", "postal.x"}, {"post.*", "post"},
		{"*", "a"}, {"a.b", "a.b"}, {"post.comment.*", "post.comment.added"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, typ string) {
		if ValidateFilter(filter) != nil || ValidateType(typ) != nil {
			return
		}
		got := Matches([]string{filter}, typ)
		if want := refMatches(filter, typ); got != want {
			t.Fatalf("Matches([%q], %q) = %v, reference says %v", filter, typ, got, want)
		}
		if !Matches([]string{"*"}, typ) || !Matches([]string{typ}, typ) {
			t.Fatalf("%q not matched by * or by itself", typ)
		}
		if got != Matches([]string{"never.matches", filter}, typ) {
			t.Fatalf("result depends on other filters")
		}
	})
}

func FuzzValidateType(f *testing.F) {
	for _, s := range []string{"post.published", "post.*", "a..b", "post.>", "post published", "pöst", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateType(s) != nil {
			return
		}
		if len(s) == 0 || len(s) > MaxLen {
			t.Fatalf("ValidateType accepted %q of length %d", s, len(s))
		}
		for _, tok := range strings.Split(s, ".") {
			if tok == "" {
				t.Fatalf("ValidateType accepted %q with an empty token", s)
			}
			if strings.ContainsFunc(tok, func(r rune) bool { return !isTokenByte(byte(r)) || r > 0x7f }) {
				t.Fatalf("ValidateType accepted %q with token %q", s, tok)
			}
		}
		// A valid type is a valid exact filter and is valid as a prefix.
		if err := ValidateFilter(s); err != nil {
			t.Fatalf("type %q is not a valid filter: %v", s, err)
		}
		if len(s) <= MaxLen-2 {
			if err := ValidateFilter(s + ".*"); err != nil {
				t.Fatalf("%q.* is not a valid filter: %v", s, err)
			}
		}
	})
}

func BenchmarkMatches(b *testing.B) {
	filters := []string{"user.created", "user.deleted", "invoice.paid", "invoice.*", "post.comment.*"}
	b.ReportAllocs()
	for b.Loop() {
		Matches(filters, "post.comment.added")
	}
}

func BenchmarkMatchesMiss(b *testing.B) {
	filters := []string{"user.created", "user.deleted", "invoice.paid", "invoice.*", "post.comment.*"}
	b.ReportAllocs()
	for b.Loop() {
		Matches(filters, "order.shipped")
	}
}
