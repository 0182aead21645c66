// Package benchcmd is the command-line plumbing that the bench commands
// (services/bench/loadgen, runner and sink) share: reading comma-separated
// flag values, running until SIGINT or SIGTERM, and writing a results file.
// What they measure lives in services/bench/internal/bench; this package
// only keeps the three main functions from each doing the same chores their
// own way.
package benchcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// List splits a comma-separated flag value into its items, trimmed of
// white space, leaving out empty ones, so that "a, b," and "a,b" mean the
// same and an empty value is no items at all.
func List(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// SignalContext returns a context cancelled by SIGINT or SIGTERM, and the
// function that stops listening for them. A bench command runs under it so
// that a run stopped from the terminal or by make winds down through its
// own code and still writes what it measured.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// WriteFile creates (or truncates) the file at path, has write fill it and
// closes it. The error names the file; a failed close is an error too,
// since that is where a full disk can show.
func WriteFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err // an *os.PathError, which names the file
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err // an *os.PathError
	}
	return nil
}
