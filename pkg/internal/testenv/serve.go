package testenv

import (
	"context"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
)

// Serve runs, in the test's process, a server shaped like Herald's
// service.Run: run works until its context ends and calls ready once with
// what it serves (its addresses). Serve returns what ready said, and stop,
// which ends the server and waits for it; stop also runs at t.Cleanup. The
// test fails if the server stops on an error or is not ready within 30 s,
// and, with a dump of the goroutines, if it does not stop within 45 s of
// being told to: a graceful stop that hangs is a bug, not a slow test.
func Serve[T any](t testing.TB, run func(ctx context.Context, ready func(T)) error) (info T, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan T, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(v T) { readyc <- v }) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("the server returned %v after a graceful stop", err)
				}
			case <-time.After(45 * time.Second):
				var dump strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
				t.Errorf("the server did not stop within 45s of its context ending; goroutines:\n%s", dump.String())
			}
		})
	}
	t.Cleanup(stop)
	select {
	case info = <-readyc:
	case err := <-done:
		t.Fatalf("the server stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the server was not ready within 30s")
	}
	return info, stop
}

// Buffer is a bytes buffer that a running command writes while the test
// reads it.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
