package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"
)

const (
	natsServerModule  = "github.com/nats-io/nats-server/v2"
	pinnedNATSVersion = "v2.15.2"
)

// NATSServerBinary returns a nats-server binary at the version Herald's
// module requires, built from the module proxy with `go build` in pkgDir
// (the directory of github.com/heraldhq/herald/pkg) the first time, and
// cached where package testenv caches it (HERALD_TESTBIN_DIR, or
// <user cache dir>/herald/testbin), so tests and benches share one build.
// Never the system's nats-server, which may be too old.
func NATSServerBinary(pkgDir string, logf func(string, ...any)) (string, error) {
	version := pinnedNATSVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == natsServerModule && d.Version != "" && d.Version != "(devel)" {
				version = d.Version
				if d.Replace != nil && d.Replace.Version != "" {
					version = d.Replace.Version
				}
			}
		}
	}
	dir := os.Getenv("HERALD_TESTBIN_DIR")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "herald", "testbin")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "nats-server-"+version)
	if checkNATSBinary(path, version) == nil {
		return path, nil
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	defer os.Remove(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if pkgDir == "" {
		return "", fmt.Errorf("no nats-server %s in %s, and no module directory to build it in", version, dir)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, natsServerModule)
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	logf("building nats-server %s into %s (once per machine)", version, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", natsServerModule, err, out)
	}
	if err := checkNATSBinary(tmp, version); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

func checkNATSBinary(path, version string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w", path, err)
	}
	if !strings.Contains(string(out), strings.TrimPrefix(version, "v")) {
		return fmt.Errorf("%s is %q, want %s", path, strings.TrimSpace(string(out)), version)
	}
	return nil
}
