package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/internal/testenv/natsbin"
	"github.com/heraldhq/herald/pkg/natsembed"
)

const (
	minNATSMajor = 2
	minNATSMinor = 12
)

// NATS returns the URL of a NATS server (>= 2.12, JetStream enabled) for this
// test: NATS_URL if set (checked once per process; tests sharing it must use
// distinct stream names), else an embedded server on a random loopback port
// with a t.TempDir() store, shut down at t.Cleanup.
func NATS(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("NATS_URL"); u != "" {
		if err := checkNATSURL(u); err != nil {
			t.Fatalf("testenv: NATS_URL=%s: %v", u, err)
		}
		return u
	}
	return NATSServer(t).URL()
}

var natsURLChecks sync.Map // url -> func() error (sync.OnceValue)

func checkNATSURL(u string) error {
	f, _ := natsURLChecks.LoadOrStore(u, sync.OnceValue(func() error {
		nc, err := nats.Connect(u, nats.Timeout(5*time.Second))
		if err != nil {
			return err
		}
		defer nc.Close()
		v := nc.ConnectedServerVersion()
		if !versionAtLeast(v, minNATSMajor, minNATSMinor) {
			return fmt.Errorf("nats-server %s is too old, need >= %d.%d", v, minNATSMajor, minNATSMinor)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("JetStream not available: %w", err)
		}
		return nil
	}))
	return f.(func() error)()
}

func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// EmbeddedNATS is a natsembed server owned by one test that can be stopped
// and started again on the same port and store directory.
type EmbeddedNATS struct {
	cfg natsembed.Config
	url string

	mu  sync.Mutex
	srv *natsembed.Server
}

// NATSServer starts an embedded JetStream server on a random loopback port
// with a t.TempDir() store, logging (info and up) through t.Log, and shuts it
// down at t.Cleanup. opts may adjust the config before the first start.
func NATSServer(t testing.TB, opts ...func(*natsembed.Config)) *EmbeddedNATS {
	t.Helper()
	// Logger first: its cleanup must run after the server's shutdown.
	lg := Logger(t).Level(max(zerolog.InfoLevel, logLevel())).With().Str("component", "nats-server").Logger()
	cfg := natsembed.Config{
		StoreDir:   t.TempDir(),
		Host:       "127.0.0.1",
		Port:       -1,
		ServerName: "testenv-" + randHex(4),
		Logger:     lg,
	}
	for _, o := range opts {
		o(&cfg)
	}
	e := &EmbeddedNATS{cfg: cfg}
	t.Cleanup(e.Stop)
	e.Start(t)
	return e
}

func logLevel() zerolog.Level {
	if l, err := zerolog.ParseLevel(os.Getenv("HERALD_TEST_LOG_LEVEL")); err == nil && l != zerolog.NoLevel {
		return l
	}
	return zerolog.DebugLevel
}

// URL is the client URL; it stays the same across restarts.
func (e *EmbeddedNATS) URL() string { return e.url }

// StoreDir is the JetStream store directory.
func (e *EmbeddedNATS) StoreDir() string { return e.cfg.StoreDir }

// Server is the running server (nil while stopped). In-process connections
// from Server().Connect do not survive a restart; connect to URL for that.
func (e *EmbeddedNATS) Server() *natsembed.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

// Stop shuts the server down gracefully. No-op when stopped.
func (e *EmbeddedNATS) Stop() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

// Start starts a stopped server again with the same port and store.
func (e *EmbeddedNATS) Start(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		t.Fatalf("testenv: embedded NATS already running")
	}
	srv, err := natsembed.Start(e.cfg)
	if err != nil {
		t.Fatalf("testenv: embedded NATS: %v", err)
	}
	e.srv = srv
	if e.cfg.Port <= 0 && !e.cfg.DontListen {
		e.cfg.Port = srv.Port() // restarts reuse the port
	}
	e.url = srv.ClientURL()
}

// Restart stops the server (gracefully) and starts it again.
func (e *EmbeddedNATS) Restart(t testing.TB) {
	t.Helper()
	e.Stop()
	e.Start(t)
}

// NATSProcess starts the pinned nats-server (see NATSBinary) as a child
// process: -js -a 127.0.0.1 -p <free port> -sd <t.TempDir()> -n <name>, then
// args (which may override those). It returns once the server answers.
// Start restarts it on the same port and store dir.
func NATSProcess(t testing.TB, args ...string) *Process {
	t.Helper()
	bin := NATSBinary(t)
	store := t.TempDir()
	name := "testenv-" + randHex(4)
	p := newProcess(t, "nats-server", nil, bin)
	p.ready = func(p *Process, within time.Duration) error {
		return p.poll(within, func() error { return checkNATSInfo(p.addr(), name) })
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before the server binds it
		port := strconv.Itoa(FreePort(t))
		p.args = append([]string{"-js", "-a", "127.0.0.1", "-p", port, "-sd", store, "-n", name}, args...)
		p.url = "nats://127.0.0.1:" + port
		if err = p.start(); err != nil {
			break
		}
		if err = p.ready(p, readyTimeout); err == nil {
			return p
		}
		p.Kill()
	}
	t.Fatalf("testenv: nats-server not ready: %v", err)
	return nil
}

// addr is host:port of the process's URL.
func (p *Process) addr() string {
	if i := strings.Index(p.url, "://"); i >= 0 {
		a := p.url[i+3:]
		if j := strings.IndexByte(a, '/'); j >= 0 {
			a = a[:j]
		}
		return a
	}
	return p.url
}

// checkNATSInfo reads the INFO line at addr and checks it comes from the
// server named name (not whoever else may own the port).
func checkNATSInfo(addr, name string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	js, ok := strings.CutPrefix(strings.TrimSpace(line), "INFO ")
	if !ok {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	var info struct {
		Name      string `json:"server_name"`
		JetStream bool   `json:"jetstream"`
	}
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		return err
	}
	if info.Name != name {
		return fmt.Errorf("port answered by server %q, not %q", info.Name, name)
	}
	if !info.JetStream {
		return errors.New("JetStream not enabled")
	}
	return nil
}

var natsBinary struct {
	mu   sync.Mutex
	path string
}

// NATSBinary returns the path of a nats-server binary at the version this
// module requires (v2.15.2), built the first time on a machine and cached
// (see natsbin.Build, which the bench uses too). Concurrent test processes
// build it once. Never the system's nats-server, which may be too old.
func NATSBinary(t testing.TB) string {
	t.Helper()
	natsBinary.mu.Lock()
	defer natsBinary.mu.Unlock()
	if natsBinary.path != "" {
		return natsBinary.path
	}
	path, err := natsbin.Build(t.Logf)
	if err != nil {
		t.Fatalf("testenv: nats-server binary: %v", err)
	}
	natsBinary.path = path
	return path
}

// JetStream connects to this test's NATS server (NATS) and returns a
// JetStream handle; the connection closes at cleanup.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	return ConnectJetStream(t, NATS(t))
}

// ConnectJetStream connects to the NATS server at url with opts and returns
// a JetStream handle; the connection closes at cleanup. It is the one
// place tests open a JetStream connection of their own.
func ConnectJetStream(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to NATS at %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}
