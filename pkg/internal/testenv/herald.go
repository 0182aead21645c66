package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var heraldBin struct {
	once sync.Once
	dir  string
	err  error
}

// HeraldBinaries builds herald, herald-ingest, herald-router and
// herald-sender once per test process (a plain go build from the services
// module, as operators run them; race adds -race) and returns their
// directory. Call RemoveHeraldBinaries from TestMain when done.
func HeraldBinaries(t testing.TB, race bool) string {
	t.Helper()
	heraldBin.once.Do(func() { heraldBin.dir, heraldBin.err = buildHerald(t, race) })
	if heraldBin.err != nil {
		t.Fatalf("build Herald binaries: %v", heraldBin.err)
	}
	return heraldBin.dir
}

// RemoveHeraldBinaries deletes what HeraldBinaries built, if anything.
func RemoveHeraldBinaries() {
	if heraldBin.dir != "" {
		_ = os.RemoveAll(heraldBin.dir)
	}
}

func buildHerald(t testing.TB, race bool) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go command not found: %w", err)
	}
	dir, err := os.MkdirTemp("", "herald-bin-")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	args := []string{"build"}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "-o", dir+string(os.PathSeparator), "./herald", "./ingest", "./router", "./sender")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = filepath.Join(root, "services")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %w\n%s", cmd.Dir, err, out)
	}
	for _, role := range []string{"ingest", "router", "sender"} {
		if err := os.Rename(filepath.Join(dir, role), filepath.Join(dir, "herald-"+role)); err != nil {
			return "", err
		}
	}
	t.Logf("built Herald binaries in %s (%s)", dir, time.Since(start).Round(100*time.Millisecond))
	return dir, nil
}

// RepoRoot walks up from the working directory to the directory holding
// go.work.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}
