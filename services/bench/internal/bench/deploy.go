package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/service"
)

// DeployOptions are what a scenario asks of a fresh deployment.
type DeployOptions struct {
	Dir           string // scratch directory for data and logs
	MaxEventBytes int64  // HERALD_MAX_EVENT_BYTES; 0: Herald's default
	RetrySchedule string // HERALD_RETRY_SCHEDULE; "": Herald's default
	Pprof         bool   // serve pprof (HERALD_PPROF_ADDR) on a free port
	// Env is more KEY=VALUE settings for every Herald process, after the
	// bench's own (so they win): to compare a setting against the default.
	Env []string
}

// Deployer starts fresh Herald deployments.
type Deployer interface {
	Name() string
	Start(ctx context.Context, o DeployOptions) (*Stack, error)
}

// Stack is a running deployment.
type Stack struct {
	Deployment string
	APIURL     string // http://127.0.0.1:port
	NATSURL    string
	// NATSOptions connect to NATSURL as Herald does (its own credentials
	// of an all-in-one's embedded server), for reading the DLQ; producers
	// connect with an API key instead (ConnectProducer).
	NATSOptions []nats.Option
	AdminToken  string
	Procs       []*Proc // processes to measure; empty when in-process
	// RedisAddr and NATSMonitors (http://host:port, one per node), when
	// set, are read before and after each load phase for what it cost
	// them (Traffic).
	RedisAddr    string
	NATSMonitors []string
	stop         func()
	once         sync.Once
}

// NewStack describes a deployment started by other means (in-process);
// stop is called once by Stop.
func NewStack(name, apiURL, natsURL, admin string, stop func()) *Stack {
	return &Stack{Deployment: name, APIURL: apiURL, NATSURL: natsURL, AdminToken: admin, stop: stop}
}

// Stop stops the deployment gracefully.
func (s *Stack) Stop() {
	s.once.Do(func() {
		if s.stop != nil {
			s.stop()
		}
	})
}

// Proc is a process of a deployment.
type Proc struct {
	Name      string
	Herald    bool   // a Herald process (else NATS or Redis)
	URL       string // a Herald process's HTTP server: /readyz, /metrics
	PprofAddr string
	LogPath   string
	cmd       *exec.Cmd
	done      chan struct{}
	exitErr   error // once done
	// terminated marks a process stopped on purpose during a run
	// (Terminate), which does not void it.
	terminated bool
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Tail returns the last n lines of the process's output.
func (p *Proc) Tail(n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// Terminate stops the process as an orchestrator scaling it down does
// (SIGTERM, then SIGKILL after grace) during a run, which does not void
// the run. It returns how the process exited: nil for status 0.
func (p *Proc) Terminate(grace time.Duration) error {
	p.terminated = true
	p.stop(grace)
	return p.exitErr
}

// stop sends SIGTERM and waits, then SIGKILL.
func (p *Proc) stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cleanEnv is the environment without anything that configures Herald,
// NATS or Redis: a deployment gets exactly what the bench gives it.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "HERALD_") || k == "NATS_URL" || k == "REDIS_URL" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func startProc(dir, name string, herald bool, env []string, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Proc{Name: name, Herald: herald, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.exitErr = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// waitReady polls check until it succeeds, the process exits, or 30 s.
func (p *Proc) waitReady(ctx context.Context, check func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before it was ready (%v); last lines:\n%s", p.Name, err, p.Tail(20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30 s: %v; last lines:\n%s", p.Name, err, p.Tail(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var probe = &http.Client{Timeout: 2 * time.Second}

func httpOK(url string) func() error {
	return func() error {
		resp, err := probe.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(b)))
		}
		return nil
	}
}

// FreePort returns a TCP port free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeAddr() (string, error) {
	p, err := FreePort()
	return "127.0.0.1:" + strconv.Itoa(p), err
}

func randToken(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// BenchEncryptionKey is HERALD_ENCRYPTION_KEY for benchmarked deployments
// (32 bytes, base64; a test key, not a secret).
const BenchEncryptionKey = "YmVuY2gtZW5jcnlwdGlvbi1rZXktMzItYnl0ZXMhISE="

func heraldEnv(o DeployOptions) []string {
	env := []string{
		"HERALD_LOG_FORMAT=json",
		// Endpoints are on 127.0.0.1: allow it wherever a service may
		// refuse private addresses (harmless where it is not known).
		"HERALD_ALLOW_PRIVATE_NETWORKS=true",
		"HERALD_EGRESS_ALLOW_PRIVATE=true",
		// One key for every process of a deployment: secrets at rest are
		// encrypted, as in production.
		"HERALD_ENCRYPTION_KEY=" + BenchEncryptionKey,
		// The bench measures Herald's limit, not the per-tenant rate limit.
		"HERALD_TENANT_EVENTS_PER_SECOND=0",
	}
	if o.MaxEventBytes > 0 {
		env = append(env, "HERALD_MAX_EVENT_BYTES="+strconv.FormatInt(o.MaxEventBytes, 10))
	}
	if o.RetrySchedule != "" {
		env = append(env, "HERALD_RETRY_SCHEDULE="+o.RetrySchedule)
	}
	return env
}

// startHerald starts one Herald binary with its own HTTP (and pprof)
// address and waits until /readyz answers.
func startHerald(ctx context.Context, o DeployOptions, name, bin string, env []string) (*Proc, string, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	env = append(append(append(heraldEnv(o), env...), o.Env...), "HERALD_HTTP_ADDR="+httpAddr)
	var pprofAddr string
	if o.Pprof {
		if pprofAddr, err = freeAddr(); err != nil {
			return nil, "", err
		}
		env = append(env, "HERALD_PPROF_ADDR="+pprofAddr)
	}
	p, err := startProc(o.Dir, name, true, env, bin)
	if err != nil {
		return nil, "", err
	}
	p.PprofAddr, p.URL = pprofAddr, "http://"+httpAddr
	if err := p.waitReady(ctx, httpOK("http://"+httpAddr+"/readyz")); err != nil {
		p.stop(5 * time.Second)
		return nil, "", err
	}
	return p, "http://" + httpAddr, nil
}

func stopAll(procs []*Proc) {
	var wg sync.WaitGroup
	for _, p := range procs { // Herald first, concurrently; then NATS and Redis
		if p.Herald {
			wg.Go(func() { p.stop(15 * time.Second) })
		}
	}
	wg.Wait()
	for _, p := range procs {
		if !p.Herald {
			p.stop(10 * time.Second)
		}
	}
}

// AllInOne deploys bin/herald: API, router and sender with NATS embedded,
// in one process. Redis is pointed at a closed port, so it runs on its
// in-process endpoint cache, as `make run` does without a Redis.
type AllInOne struct{ Bin string }

// Name implements Deployer.
func (AllInOne) Name() string { return "all-in-one" }

// Start implements Deployer.
func (d AllInOne) Start(ctx context.Context, o DeployOptions) (*Stack, error) {
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	closed, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin := randToken("adm_bench")
	data := filepath.Join(o.Dir, "data")
	p, api, err := startHerald(ctx, o, "herald", d.Bin, []string{
		"HERALD_NATS_LISTEN=" + natsAddr,
		"HERALD_DATA_DIR=" + data,
		"HERALD_ADMIN_TOKEN=" + admin,
		"REDIS_URL=redis://" + closed,
	})
	if err != nil {
		return nil, err
	}
	own, err := service.ReadEmbeddedNATSAuth(data)
	if err != nil {
		stopAll([]*Proc{p})
		return nil, err
	}
	s := &Stack{Deployment: d.Name(), APIURL: api, NATSURL: "nats://" + natsAddr, NATSOptions: own.Options(), AdminToken: admin, Procs: []*Proc{p}}
	s.stop = func() { stopAll(s.Procs) }
	return s, nil
}

// Separate deploys herald-ingest, herald-router and Senders herald-sender
// processes against an external nats-server and a redis-server, each a
// process of its own.
type Separate struct {
	BinDir      string // holds herald-ingest, herald-router, herald-sender
	NATSServer  string // nats-server binary (>= 2.12)
	RedisServer string // redis-server binary
	Senders     int    // default 2
	// Replicas 3 runs a three-node JetStream cluster and
	// HERALD_STREAM_REPLICAS=3 (what R3 costs); 0 or 1: one nats-server.
	Replicas int
	// Label, when set, is the deployment's name instead of "separate": the
	// scaling scenario's runs say how many senders they have.
	Label string
}

// Name implements Deployer.
func (d Separate) Name() string {
	switch {
	case d.Label != "":
		return d.Label
	case d.Replicas > 1:
		return fmt.Sprintf("separate-r%d", d.Replicas)
	}
	return "separate"
}

// Start implements Deployer.
func (d Separate) Start(ctx context.Context, o DeployOptions) (st *Stack, err error) {
	var procs []*Proc
	defer func() {
		if err != nil {
			stopAll(procs)
		}
	}()
	natsURL, monitors, err := d.startNATS(ctx, o.Dir, &procs)
	if err != nil {
		return nil, err
	}

	redisAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	rhost, rport, _ := net.SplitHostPort(redisAddr)
	if err := os.MkdirAll(filepath.Join(o.Dir, "redis"), 0o755); err != nil {
		return nil, err
	}
	rp, err := startProc(o.Dir, "redis-server", false, nil, d.RedisServer,
		"--port", rport, "--bind", rhost, "--save", "", "--appendonly", "no",
		"--dir", filepath.Join(o.Dir, "redis"), "--daemonize", "no")
	if err != nil {
		return nil, err
	}
	procs = append(procs, rp)
	if err := rp.waitReady(ctx, func() error { return redisPing(redisAddr) }); err != nil {
		return nil, err
	}

	admin := randToken("adm_bench")
	common := []string{"NATS_URL=" + natsURL, "REDIS_URL=redis://" + redisAddr + "/0", "HERALD_REDIS_PREFIX=bench:"}
	if d.Replicas > 1 {
		common = append(common, "HERALD_STREAM_REPLICAS="+strconv.Itoa(d.Replicas))
	}
	ip, api, err := startHerald(ctx, o, "herald-ingest", filepath.Join(d.BinDir, "herald-ingest"), append(common, "HERALD_ADMIN_TOKEN="+admin))
	if err != nil {
		return nil, err
	}
	procs = append(procs, ip)
	rt, _, err := startHerald(ctx, o, "herald-router", filepath.Join(d.BinDir, "herald-router"), common)
	if err != nil {
		return nil, err
	}
	procs = append(procs, rt)
	for i := range max(d.Senders, 1) {
		sp, _, err := startHerald(ctx, o, fmt.Sprintf("herald-sender-%d", i+1), filepath.Join(d.BinDir, "herald-sender"), common)
		if err != nil {
			return nil, err
		}
		procs = append(procs, sp)
	}
	s := &Stack{Deployment: d.Name(), APIURL: api, NATSURL: natsURL, AdminToken: admin, Procs: procs,
		RedisAddr: redisAddr, NATSMonitors: monitors}
	s.stop = func() { stopAll(s.Procs) }
	return s, nil
}

// startNATS starts one nats-server, or Replicas of them routed into one
// JetStream cluster, each with its monitoring port, and waits until
// JetStream answers (on a cluster: a meta leader is elected). It returns
// the client URLs, comma-separated, and the monitoring URLs.
func (d Separate) startNATS(ctx context.Context, dir string, procs *[]*Proc) (string, []string, error) {
	n := max(d.Replicas, 1)
	var clients, routes, cluster, monitors []string
	for range n {
		c, err := freeAddr()
		if err != nil {
			return "", nil, err
		}
		r, err := freeAddr()
		if err != nil {
			return "", nil, err
		}
		m, err := freeAddr()
		if err != nil {
			return "", nil, err
		}
		clients, cluster, monitors = append(clients, c), append(cluster, r), append(monitors, "http://"+m)
		routes = append(routes, "nats://"+r)
	}
	var urls []string
	for i := range n {
		host, port, _ := net.SplitHostPort(clients[i])
		_, mport, _ := net.SplitHostPort(strings.TrimPrefix(monitors[i], "http://"))
		name := "nats-server"
		args := []string{"-js", "-a", host, "-p", port, "-m", mport, "-sd", filepath.Join(dir, "nats", strconv.Itoa(i)), "-n", "bench-nats-" + strconv.Itoa(i)}
		if n > 1 {
			name = fmt.Sprintf("nats-server-%d", i+1)
			args = append(args, "--cluster_name", "bench", "--cluster", "nats://"+cluster[i], "--routes", strings.Join(routes, ","))
		}
		p, err := startProc(dir, name, false, nil, d.NATSServer, args...)
		if err != nil {
			return "", nil, err
		}
		*procs = append(*procs, p)
		urls = append(urls, "nats://"+clients[i])
	}
	url := strings.Join(urls, ",")
	for _, p := range (*procs)[len(*procs)-n:] {
		if err := p.waitReady(ctx, func() error { return jetStreamUp(ctx, url) }); err != nil {
			return "", nil, err
		}
	}
	return url, monitors, nil
}

func jetStreamUp(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(cctx)
	return err
}

func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New("redis answered " + strings.TrimSpace(line))
	}
	return nil
}
