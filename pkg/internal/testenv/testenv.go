// Package testenv provides real infrastructure for tests: NATS with
// JetStream, Redis, child processes, free ports, polling and logging. It never
// mocks NATS or Redis. Helpers that take a testing.TB must be called from the
// test's goroutine (they may call t.Fatal or t.Skip).
//
// A test that cannot get a server it needs skips, loudly, on a developer's
// machine, and fails under CI (see Unavailable): a suite that skips in CI
// passes without having proved anything.
//
// It is a module of its own, github.com/heraldhq/herald/internal/testenv, in
// the directory pkg/internal/testenv. The tests of both the pkg and the
// services modules use it, and Go's internal rule goes by import path: under
// github.com/heraldhq/herald/pkg/internal only pkg could import it, under
// .../herald/internal every Herald module can and nothing outside Herald can.
// Being no package of the pkg module keeps it, and the testcontainers client
// it imports, out of the library that receivers and operators build against:
// pkg's go.mod still lists testcontainers, as an indirect requirement of
// pkg's tests, but no package of pkg links it.
//
// Environment:
//
//	CI                     "true" (or 1): a missing server fails the test instead of skipping it
//	NATS_URL               use this NATS server (>= 2.12, JetStream) instead of an embedded one
//	REDIS_URL              use this Redis instead of a container or a child redis-server
//	HERALD_TESTBIN_DIR     where NATSBinary caches nats-server (default <user cache dir>/herald/testbin)
//	HERALD_TEST_LOG_LEVEL  level of Logger (default debug)
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// InCI reports whether the tests run under CI: CI set to true (or 1), as
// GitHub Actions, GitLab CI and most others set it.
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// Unavailable ends a test that cannot run here because something it needs
// (a server, a binary, a kernel feature) is missing; format and args say
// what and how to get it. On a developer's machine the test is skipped with
// a message in capitals, hard to miss in -v output. Under CI (InCI) it fails
// instead: CI is where the whole suite must run, and a skip there would
// pass a run that proved nothing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("testenv: %s (CI is set: a missing dependency fails the run instead of skipping it)", msg)
		return
	}
	t.Skipf("testenv: SKIPPING: %s", strings.ToUpper(msg))
}

// Eventually checks cond at once and then every 10 ms until it returns true;
// if within passes first, it fails the test with msgAndArgs (a format string
// and its arguments). Use it instead of sleeping. cond should return quickly
// (give its calls short timeouts): Eventually cannot interrupt it.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: condition not met within %s: %s", within, formatMsg(msgAndArgs))
		}
		<-tick.C
	}
}

// Lazy is a message argument of Eventually formatted only when printed:
// it shows the state at the deadline, not when the wait began.
type Lazy func() string

func (l Lazy) String() string { return l() }

func formatMsg(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return "(no message)"
	}
	if f, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(f, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}

// Logger returns a logger writing human-readable lines through t.Log, so they
// show only for failing tests (or with -v). Lines logged after the test's
// cleanups have run are dropped rather than panicking.
func Logger(t testing.TB) zerolog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.close)
	cw := zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: "15:04:05.000"}
	return zerolog.New(cw).Level(logLevel()).Hook(msTimestamp{})
}

// msTimestamp adds a millisecond-precision time that ConsoleWriter can
// parse, without touching zerolog's global TimeFieldFormat.
type msTimestamp struct{}

func (msTimestamp) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().Format(time.RFC3339Nano))
}

type tWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
