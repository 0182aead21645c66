package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	readyTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
	tailLines    = 50
)

// Process is a child process owned by one test. Its stdout and stderr go to
// a log file under t.TempDir(), whose last 50 lines are printed if the test
// fails. It is killed at t.Cleanup. Methods must be called from the test's
// goroutine.
type Process struct {
	t       testing.TB
	name    string
	bin     string
	args    []string
	env     []string
	logPath string
	url     string
	ready   func(p *Process, within time.Duration) error // nil for StartProcess

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd exits
	waitErr error
	starts  int
}

// StartProcess starts bin with args and the current environment plus env
// ("K=V"; later entries win). It returns once the process is spawned: wait
// for readiness with WaitTCP or WaitHTTP.
func StartProcess(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	p := newProcess(t, name, env, bin, args...)
	if err := p.start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

func newProcess(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	safe := strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r == ' ' {
			return '_'
		}
		return r
	}, name)
	p := &Process{
		t:       t,
		name:    name,
		bin:     bin,
		args:    args,
		env:     env,
		logPath: filepath.Join(t.TempDir(), safe+".log"),
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("testenv: last %d lines of %s output (%s):\n%s", tailLines, p.name, p.logPath, p.tail(tailLines))
		}
	})
	return p
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil && !isClosed(p.done) {
		return fmt.Errorf("%s: already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log file: %w", p.name, err)
	}
	p.starts++
	fmt.Fprintf(f, "=== testenv start #%d: %s %s\n", p.starts, p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: start %s: %w", p.name, p.bin, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.waitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Start starts the process again with the same command line (and, for
// NATSProcess and RedisProcess, the same port) and waits until it is ready
// if it has a readiness check. It fails the test if it is running.
func (p *Process) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("testenv: %v", err)
	}
	if p.ready != nil {
		if err := p.ready(p, readyTimeout); err != nil {
			p.t.Fatalf("testenv: %s not ready: %v", p.name, err)
		}
	}
}

// Kill sends SIGKILL and waits for the process to exit. No-op if not running.
func (p *Process) Kill() { p.signalAndWait(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits for the process to exit, sending SIGKILL
// after 10 s. No-op if not running.
func (p *Process) Stop() { p.signalAndWait(syscall.SIGTERM, stopTimeout) }

func (p *Process) signalAndWait(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil || isClosed(done) {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			p.t.Logf("testenv: %s did not exit %s after %v; killing", p.name, grace, sig)
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done != nil && !isClosed(p.done)
}

// Done is closed when the current run of the process exits.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitErr is the error from the last run's exit (nil for status 0 or while running).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Pid is the process ID of the current (or last) run.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// URL is the service URL set by the helper that started the process (NATS
// or Redis) or by SetURL.
func (p *Process) URL() string { return p.url }

// SetURL records the URL that URL returns.
func (p *Process) SetURL(u string) { p.url = u }

// LogPath is the file holding the process's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Output returns everything the process has written so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *Process) tail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// WaitTCP waits until addr ("host:port") accepts TCP connections, failing the
// test after within or as soon as the process exits.
func (p *Process) WaitTCP(addr string, within time.Duration) {
	p.t.Helper()
	err := p.poll(within, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		p.t.Fatalf("testenv: %s: %s not accepting connections: %v", p.name, addr, err)
	}
}

// WaitHTTP waits until GET url answers 200, failing the test after within or
// as soon as the process exits.
func (p *Process) WaitHTTP(url string, within time.Duration) {
	p.t.Helper()
	if err := p.poll(within, func() error { return get200(url) }); err != nil {
		p.t.Fatalf("testenv: %s: %s not ready: %v", p.name, url, err)
	}
}

// poll runs check every 10 ms until it succeeds, the process exits or within passes.
func (p *Process) poll(within time.Duration, check func() error) error {
	done := p.Done()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("process exited (%v); last check: %w", p.ExitErr(), err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %w", within, err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitHTTP polls GET url every 10 ms until it answers 200, failing the test
// after within.
func WaitHTTP(t testing.TB, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := get200(url)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s not ready within %s: %v", url, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func get200(url string) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
