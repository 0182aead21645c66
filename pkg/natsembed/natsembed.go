// Package natsembed runs a JetStream-enabled nats-server inside the current
// process. The all-in-one binary uses it as its broker, and tests use it
// through package testenv.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

// readyTimeout bounds how long Start waits for the server to accept clients.
const readyTimeout = 10 * time.Second

// Config configures an embedded server. The zero value (plus a StoreDir) is a
// server listening on a random loopback port.
type Config struct {
	// StoreDir is the JetStream file store directory. Required.
	StoreDir string
	// Host is the client listen address; "" means 127.0.0.1.
	Host string
	// Port is the client port. 0 or -1 picks a free port (see Server.Port);
	// 0 does not mean nats-server's 4222, which a system NATS may own.
	Port int
	// DontListen serves in-process connections only (Server.Connect).
	DontListen bool
	// SyncInterval is the file store fsync interval; 0 keeps the server
	// default (2m). SyncAlways fsyncs every write (much slower).
	SyncInterval time.Duration
	SyncAlways   bool
	// MaxPayload is the largest message accepted; 0 keeps the default (1 MiB).
	MaxPayload int32
	// ServerName names the server; "" lets the server use its ID.
	ServerName string
	// Users are password users (name to password), in the global account
	// with every permission. None: clients need no credentials at all.
	Users map[string]string
	// CalloutIssuer, a public account nkey, turns on the auth callout: a
	// client that is not one of Users is authorized by the service that
	// answers on $SYS.REQ.USER.AUTH in the global account (Herald's, package
	// natsauth), whose responses this key must sign. Users bypass it (they
	// are its auth_users), so that the service itself can connect.
	CalloutIssuer string
	// Logger receives the server's log lines: notices at info, warnings at
	// warn, errors and fatals at error; debug and trace lines only when the
	// logger is enabled at those levels. The zero Logger discards everything.
	Logger zerolog.Logger
}

// Server is a running embedded nats-server.
type Server struct {
	ns           *server.Server
	url          string
	port         int
	shutdownOnce sync.Once
}

// Start starts a JetStream-enabled server and waits (at most 10 s) until it
// accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:   cfg.ServerName,
		Host:         host,
		Port:         port,
		DontListen:   cfg.DontListen,
		NoSigs:       true,
		MaxPayload:   cfg.MaxPayload,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		SyncInterval: cfg.SyncInterval,
		SyncAlways:   cfg.SyncAlways,
		// The banner is ASCII art for a terminal: as log records it is
		// lines of punctuation.
		DisableJetStreamBanner: true,
	}
	for name, password := range cfg.Users {
		// The server keeps a bcrypt hash, not the password. The passwords
		// are random (Herald's), so the lowest cost is enough and keeps
		// every connect cheap.
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("natsembed: user %s: %w", name, err)
		}
		opts.Users = append(opts.Users, &server.User{Username: name, Password: string(h)})
	}
	if cfg.CalloutIssuer != "" {
		if len(cfg.Users) == 0 {
			return nil, errors.New("natsembed: an auth callout needs Users for its service")
		}
		ac := &server.AuthCallout{Issuer: cfg.CalloutIssuer, Account: server.DEFAULT_GLOBAL_ACCOUNT}
		for _, u := range opts.Users {
			ac.AuthUsers = append(ac.AuthUsers, u.Username)
		}
		opts.AuthCallout = ac
	}
	if cfg.DontListen {
		// No listener: keep the options from claiming a port.
		opts.Port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: new server: %w", err)
	}
	lg := newLogger(cfg.Logger)
	ns.SetLoggerV2(lg, lg.debug, lg.trace, false)

	ns.Start()
	if err := waitReady(ns, lg); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}

	s := &Server{ns: ns}
	if !cfg.DontListen {
		addr, ok := ns.Addr().(*net.TCPAddr)
		if !ok {
			s.Shutdown()
			return nil, errors.New("natsembed: server has no TCP listener")
		}
		s.port = addr.Port
		s.url = "nats://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
	}
	return s, nil
}

// waitReady waits until ns accepts clients with JetStream enabled, giving up
// early when the server reported a fatal error (nats-server does not exit the
// process for us: the adapter only logs).
func waitReady(ns *server.Server, lg *logAdapter) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		if msg := lg.fatal(); msg != "" {
			return fmt.Errorf("natsembed: server failed to start: %s", msg)
		}
		if ns.ReadyForConnections(25 * time.Millisecond) {
			if !ns.JetStreamEnabled() {
				return errors.New("natsembed: server started without JetStream")
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsembed: server not ready for connections within %s", readyTimeout)
		}
	}
}

// ClientURL is the URL producers outside the process connect to, such as
// "nats://127.0.0.1:4333"; "" when the server does not listen.
func (s *Server) ClientURL() string { return s.url }

// Port is the client port actually bound; 0 when the server does not listen.
func (s *Server) Port() int { return s.port }

// Connect opens a client connection through the in-process transport (no
// TCP), which also works when the server does not listen. Options given
// here are applied after the in-process one.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.InProcessServer(s.ns)}, opts...)
	return nats.Connect(s.url, all...)
}

// Shutdown stops the server and waits until it is fully down, file store
// flushed. Safe to call more than once.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
}

// NATS exposes the underlying server.
func (s *Server) NATS() *server.Server { return s.ns }
