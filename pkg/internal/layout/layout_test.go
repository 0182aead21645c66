// Package layout_test keeps docs/architecture.md's package map true: every
// package under pkg/ is listed there with what it may import, and no
// package imports another Herald package the map does not allow.
package layout_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/heraldhq/herald/pkg/"

// row is `| \`pkg/name\` | what it owns | \`a\`, \`b\` |` in the map.
var row = regexp.MustCompile("^\\|\\s*`pkg/([a-z0-9/]+)`\\s*\\|[^|]*\\|([^|]*)\\|\\s*$")

func readMap(t *testing.T) map[string]map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	allowed := map[string]map[string]bool{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## Package map"):
			in = true
		case in && strings.HasPrefix(line, "## "):
			in = false
		case in:
			m := row.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			deps := map[string]bool{}
			for _, d := range regexp.MustCompile("`([a-z0-9/]+)`").FindAllStringSubmatch(m[2], -1) {
				deps[d[1]] = true
			}
			allowed[m[1]] = deps
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(allowed) == 0 {
		t.Fatal("docs/architecture.md has no \"## Package map\" table")
	}
	return allowed
}

// imports lists every package under pkg/ with the Herald packages it
// imports (tests excluded: a test may use any package).
func imports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	got := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
		if name == p.ImportPath || strings.HasPrefix(name, "internal/layout") {
			continue
		}
		var herald []string
		for _, imp := range p.Imports {
			if dep, ok := strings.CutPrefix(imp, module); ok {
				herald = append(herald, dep)
			}
		}
		got[name] = herald
	}
	return got
}

func TestPackageMapIsTrue(t *testing.T) {
	allowed := readMap(t)
	got := imports(t)
	var names []string
	for name := range got {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		deps, listed := allowed[name]
		if !listed {
			t.Errorf("pkg/%s is not in docs/architecture.md's package map: add a row saying what it owns and may import", name)
			continue
		}
		for _, dep := range got[name] {
			if !deps[dep] {
				t.Errorf("pkg/%s imports pkg/%s, which the package map does not allow: change the code, or the map with a reason", name, dep)
			}
		}
	}
	for name := range allowed {
		if _, ok := got[name]; !ok {
			t.Errorf("the package map lists pkg/%s, which does not exist", name)
		}
	}
}
