// Package service wires Herald's packages into a running process. The
// binaries under services/ are thin mains over Run: one role each, or all of
// them with NATS embedded (the all-in-one).
package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/health"
	"github.com/heraldhq/herald/pkg/version"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Info describes a started process, for the all-in-one's welcome text.
type Info struct {
	HTTPAddr   string
	NATSURL    string
	AdminToken string
	// AdminTokenGenerated is true when the token was generated and stored in
	// the data dir rather than given by HERALD_ADMIN_TOKEN; AdminTokenFile
	// is then where.
	AdminTokenGenerated bool
	AdminTokenFile      string
	// NATSAuthFile holds Herald's own credentials of the embedded NATS
	// server (EmbeddedNATSAuth); producers use an API key instead.
	NATSAuthFile string
	Redis        bool
	// EgressAllowPrivate is true when deliveries may go to loopback and
	// private addresses (HERALD_EGRESS_ALLOW_PRIVATE).
	EgressAllowPrivate bool
	// PortalLinks are portal sessions of the walk-through's tenant, for
	// the welcome text (the all-in-one only).
	PortalLinks []PortalLink
}

// LogTimeFormat is the time of every log record: RFC 3339 with
// milliseconds, so that records from several processes (or many within one
// second) keep their order in a collector.
const LogTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// consoleTimeFormat is the console format's time: the time of day is enough
// for a person watching a terminal, the milliseconds still order records.
const consoleTimeFormat = "15:04:05.000"

// Log formats (HERALD_LOG_FORMAT).
const (
	logJSON    = "json"
	logConsole = "console"
	// logAuto is console when the log goes to a terminal, JSON elsewhere
	// (a file, a pipe, a log collector).
	logAuto = "auto"
)

// NewLogger returns the process logger writing to w: zerolog JSON, one
// record per line, or a console format for people at a terminal (see
// logAuto). It sets zerolog's time format, a process-wide setting, to
// LogTimeFormat, so that every time field has milliseconds, not only the
// record's own. A level or format Validate refuses falls back to info and
// auto.
func NewLogger(cfg Config, w io.Writer, role string) zerolog.Logger {
	zerolog.TimeFieldFormat = LogTimeFormat
	lvl, err := parseLogLevel(cfg.LogLevel)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	if cfg.LogFormat == logConsole || cfg.LogFormat != logJSON && isTerminal(w) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: consoleTimeFormat}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", role).Logger()
}

// logLevels are the levels HERALD_LOG_LEVEL accepts. zerolog knows more
// (fatal, panic, disabled, numbers), none of which an operator means.
var logLevels = map[string]zerolog.Level{
	"trace": zerolog.TraceLevel, "debug": zerolog.DebugLevel, "info": zerolog.InfoLevel,
	"warn": zerolog.WarnLevel, "error": zerolog.ErrorLevel,
}

// parseLogLevel reads HERALD_LOG_LEVEL, in any case; "" is info.
func parseLogLevel(v string) (zerolog.Level, error) {
	if v == "" {
		return zerolog.InfoLevel, nil
	}
	if l, ok := logLevels[strings.ToLower(v)]; ok {
		return l, nil
	}
	return zerolog.NoLevel, errors.New("want trace, debug, info, warn or error")
}

// checkLogFormat checks HERALD_LOG_FORMAT; "" is auto.
func checkLogFormat(v string) error {
	switch v {
	case "", logAuto, logJSON, logConsole:
		return nil
	}
	return errors.New("want auto, json or console")
}

// Run starts the roles cfg names and serves until ctx ends, then stops
// gracefully: the HTTP server finishes its requests, routers and senders
// finish and ack what they hold, and async publishes are flushed. ready, if
// not nil, is called once everything serves.
//
// What every role shares is built once (openBase, base.go); each role has
// one constructor returning its parts (roles.go); Run starts the parts,
// serves HTTP, and stops them together.
func Run(ctx context.Context, cfg Config, log zerolog.Logger, ready func(Info)) error {
	// A Config built in code (tests, embedders) gets the same defaults and
	// the same refusals as one read by FromEnv.
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	defer startPprof(cfg.PprofAddr, log)() // HERALD_PPROF_ADDR: opt-in profiling (pprof.go)

	// The HTTP server comes first, so that the probes answer while the
	// process waits for NATS: live at once, started and ready once
	// everything below is (package health says what each probe means).
	probes := health.New()
	mux := http.NewServeMux()
	probes.Register(mux)
	var apiHandler atomic.Pointer[http.Handler]
	if cfg.Roles.API {
		starting := api.Starting()
		mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := apiHandler.Load(); h != nil {
				(*h).ServeHTTP(w, r)
				return
			}
			starting.ServeHTTP(w, r)
		}))
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		// Above the API's own limit, which it answers with a problem
		// document; net/http answers past this one in plain text.
		MaxHeaderBytes: api.ServerMaxHeaderBytes,
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	defer srv.Close() // on an error below; a no-op after the graceful Shutdown

	b, err := openBase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer b.close()

	parts := b.shared()
	var checks []health.Check
	if cfg.Roles.Router {
		parts = append(parts, b.routerRole()...)
	}
	if cfg.Roles.Sender {
		ps, check := b.senderRole()
		parts = append(parts, ps...)
		checks = append(checks, check)
	}
	if cfg.Roles.API {
		h, ps, err := b.apiRole(ctx)
		if err != nil {
			return err
		}
		apiHandler.Store(&h)
		parts = append(parts, ps...)
	}
	parts = append(parts, b.keeperPart()) // after the roles registered what they do when DELIVERIES is lost
	// What the roles learnt (the API role: the admin token) is in b.info
	// only now.
	info := b.info
	info.HTTPAddr = ln.Addr().String()

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if err := b.link.serveProducerAuth(runCtx, &wg, b.st); err != nil {
		return err
	}
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.run(runCtx); err != nil {
				log.Error().Err(err).Str("part", p.name).Msg("stopped while failing")
			}
		}()
	}

	for _, p := range parts {
		if p.ready == nil {
			continue
		}
		select {
		case <-p.ready:
		case <-ctx.Done():
		}
	}
	probes.Started(append(b.checks(), checks...)...)
	log.Info().Str("http", info.HTTPAddr).Str("nats", maskCredentials(info.NATSURL)).Bool("redis", info.Redis).
		Bool("api", cfg.Roles.API).Bool("router", cfg.Roles.Router).Bool("sender", cfg.Roles.Sender).
		Str("version", version.Version).Msg("herald ready")
	if ready != nil {
		ready(info)
	}

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		log.Error().Err(err).Msg("http server stopped")
	}
	log.Info().Msg("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx) // intake stops first: nothing new is accepted
	stop()                        // routers and senders finish what they hold
	wg.Wait()
	select { // async publishes still in flight (attempt records are plain publishes, which Drain flushes)
	case <-b.js.PublishAsyncComplete():
	case <-shutdownCtx.Done():
	}
	// Acks are fire-and-forget: a round trip to the server makes sure it
	// has every one before the connection closes. An ack lost in a socket
	// closed at exit would be a job redelivered, and so sent twice.
	if err := b.nc.FlushWithContext(shutdownCtx); err != nil {
		log.Warn().Err(err).Msg("acks may not have reached NATS before the stop; their jobs will be redelivered")
	}
	_ = b.nc.Drain()
	log.Info().Msg("stopped")
	return nil
}

func natsOptions(log zerolog.Logger) []nats.Option {
	return []nats.Option{
		nats.Name("herald"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info().Str("url", maskCredentials(c.ConnectedUrl())).Msg("nats reconnected")
		}),
	}
}

// connectRedis returns a client, or nil when Redis is optional and does not
// answer: then the cache runs in process only, which is said once.
func connectRedis(ctx context.Context, cfg Config, log zerolog.Logger) *redis.Client {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		log.Error().Err(err).Msg("REDIS_URL is not a redis:// URL; running without the Redis cache")
		return nil
	}
	redis.SetLogger(redisLog{log.With().Str("component", "redis").Logger()})
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		if cfg.RedisOptional {
			log.Warn().Str("redis", maskCredentials(cfg.RedisURL)).Msg("no Redis answers; using an in-process endpoint cache (fine for one process)")
			_ = rdb.Close()
			return nil
		}
		log.Warn().Err(err).Str("redis", maskCredentials(cfg.RedisURL)).Msg("redis does not answer yet; reading endpoints from the store until it does")
	}
	return rdb
}

// redisLog makes go-redis's own notices (a pool that cannot dial, a
// reconnect), which it writes to stderr as plain text by default, records
// of the process logger like every other line.
type redisLog struct{ log zerolog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn().Msg(fmt.Sprintf(format, v...))
}

// adminToken returns the configured operator token, or for the all-in-one
// one generated once and kept in the data dir.
func adminToken(cfg Config) (token string, generated bool, err error) {
	if cfg.AdminToken != "" || !cfg.Embedded {
		return cfg.AdminToken, false, nil
	}
	path := adminTokenFile(cfg.DataDir)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), true, nil
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	token = "adm_" + base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("store admin token: %w", err)
	}
	return token, true, nil
}

// adminTokenFile is where the all-in-one keeps the token it generated:
// an absolute path, so the welcome text's commands work from anywhere.
func adminTokenFile(dataDir string) string {
	p := filepath.Join(dataDir, "admin-token")
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// retryUntil runs fn until it succeeds or ctx ends, so services may start
// before NATS does.
func retryUntil(ctx context.Context, log zerolog.Logger, what string, fn func(context.Context) error) error {
	delay := 200 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn().Err(err).Msg(what + " failed; retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}
