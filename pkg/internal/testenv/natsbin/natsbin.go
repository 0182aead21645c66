// Package natsbin builds the nats-server binary that tests and the bench run
// as a child process: the version Herald's modules require, built once per
// machine from the module proxy. It is apart from package testenv so that
// commands (the bench's runner) can use it without linking testenv's
// container client, whose init scans the machine's processes.
package natsbin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

const (
	module = "github.com/nats-io/nats-server/v2"
	// pinnedVersion is used when the binary has no build info.
	pinnedVersion = "v2.15.2"
)

// Build returns the path of a nats-server binary at the version the running
// binary was built with (v2.15.2), built from the module cache with
// `go build` the first time on a machine and cached under HERALD_TESTBIN_DIR
// or <user cache dir>/herald/testbin. A file lock next to the binary makes
// concurrent processes (test binaries, the bench) build it once. logf
// reports a build, which takes a while. Never the system's nats-server,
// which may be too old.
func Build(logf func(string, ...any)) (string, error) {
	version := serverVersion()
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "nats-server-"+version)
	if check(path, version) == nil {
		return path, nil
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if check(path, version) == nil { // built by another process meanwhile
		return path, nil
	}

	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go command not found: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	defer os.Remove(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", tmp, module)
	cmd.Dir = moduleDir()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	logf("testenv: building nats-server %s into %s (once per machine)", version, dir)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (in %s): %w\n%s", module, cmd.Dir, err, out)
	}
	if err := check(tmp, version); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	logf("testenv: built nats-server %s in %s", version, time.Since(start).Round(time.Second))
	return path, nil
}

// serverVersion is the nats-server version in the running binary's build
// info, so that the child process runs the same server as the embedded one.
func serverVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == module {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				if d.Version != "" && d.Version != "(devel)" {
					return d.Version
				}
			}
		}
	}
	return pinnedVersion
}

func cacheDir() (string, error) {
	dir := os.Getenv("HERALD_TESTBIN_DIR")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "herald", "testbin")
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// check runs path --version and checks it reports version.
func check(path, version string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", path, err, out)
	}
	if !strings.Contains(string(out), strings.TrimPrefix(version, "v")) {
		return fmt.Errorf("%s --version = %q, want %s", path, strings.TrimSpace(string(out)), version)
	}
	return nil
}

// moduleDir is the directory of the module holding this package (so go build
// resolves nats-server from its go.mod, or the workspace's), or "" (the
// working directory) when the source path is not available, e.g. in a binary
// built with -trimpath.
func moduleDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	for dir := filepath.Dir(file); ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
