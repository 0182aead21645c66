package benchcmd

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestList(t *testing.T) {
	for in, want := range map[string][]string{
		"":              nil,
		" , ,":          nil,
		"a":             {"a"},
		"a, b,":         {"a", "b"},
		" all-in-one ,": {"all-in-one"},
	} {
		if got := List(in); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	if err := WriteFile(path, func(w io.Writer) error {
		_, err := io.WriteString(w, "line\n")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "line\n" {
		t.Fatalf("file holds %q (%v), want %q", b, err, "line\n")
	}

	boom := errors.New("boom")
	err := WriteFile(path, func(io.Writer) error { return boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), path) {
		t.Errorf("err %v: want boom, wrapped with the path", err)
	}

	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "out")
	if err := WriteFile(missing, func(io.Writer) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err %v: want os.ErrNotExist", err)
	}
}
