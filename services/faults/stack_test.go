package faults

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/services/internal/apitest"
)

// Settings every Herald under test runs with, beyond where to find its
// servers and its keys. doc.go explains each and why none switches off a
// behaviour the rows test. The endpoint cap (10), Redis, the sender's and
// router's workers and every other setting are Herald's defaults.
const (
	// retrySchedule is in whole seconds, as retries are message schedules
	// that fire on whole seconds: the always-failing endpoint's three
	// attempts of an event take 2 to 4 s instead of 35 s (the default
	// schedule starts 5s, 30s).
	retrySchedule = "1s,1s,2s"
	// ackWait moves a killed sender's or router's messages on within 2 s
	// instead of 30 s.
	ackWait = 2 * time.Second
	// breakerFailingFor keeps the always-failing endpoint's breaker closed
	// for the length of a row: its failures never stop, so with the default
	// (10 s) the breaker would open 10 s into every row and hold its jobs
	// for 30 s, doubling at each failed probe, and no row could see its
	// third attempts in minutes. The breaker is otherwise at its defaults
	// (5 failures, 30 s cool-down); services/e2e TestBreakerAcrossSenders
	// proves it opens, probes and uses no attempt while open.
	breakerFailingFor = 5 * time.Minute
	adminToken        = "adm_faults-operator-token"
	// redisPrefix is HERALD_REDIS_PREFIX on a Redis a row owns; on a shared
	// REDIS_URL each row has a prefix of its own (testenv.Redis).
	redisPrefix = "faults:"
)

// ---- binaries ----

// binDir returns the directory of the Herald binaries (plain go build from
// the services module, as operators run them), built once per test binary.
// HERALD_FAULTS_RACE=1 builds them with -race.
func binDir(t testing.TB) string {
	return testenv.HeraldBinaries(t, os.Getenv("HERALD_FAULTS_RACE") == "1")
}

// ---- the stack ----

// Stack is one deployment of Herald as separate processes: one nats-server
// or a cluster of three, Redis, herald-ingest, herald-router and two
// senders.
type Stack struct {
	t       *testing.T
	name    string // "" for the only stack of a row; "A", "B" when there are two
	NATS    []*testenv.Process
	natsMon []string // monitoring base URLs, for the cluster
	NATSURL string
	// Redis is the redis-server the stack owns and a row may stop, kill or
	// flush; nil when the stack uses a Redis from testenv.Redis (REDIS_URL,
	// when set) or another stack's.
	Redis       *testenv.Process
	RedisURL    string
	RedisPrefix string
	Ingest      *testenv.Process
	Router      *testenv.Process
	Senders     []*testenv.Process
	API         *apitest.Client
	NC          *nats.Conn
	JS          jetstream.JetStream

	env   []string
	names map[*testenv.Process]string
	pids  map[*testenv.Process]int // at the start of the fault
}

type stackOptions struct {
	cluster bool // three nats-server nodes, R3 streams
	// ownRedis gives the stack a redis-server of its own, for rows that
	// stop or flush it (never done to a shared REDIS_URL).
	ownRedis bool
	// shareRedis makes the stack use another stack's Redis and prefix: a
	// second deployment next to it.
	shareRedis *Stack
	name       string
}

// startStack starts NATS, Redis, ingest, router and two senders, and waits
// until each service answers /readyz.
func startStack(t *testing.T, o stackOptions) *Stack {
	t.Helper()
	bins := binDir(t)
	s := &Stack{t: t, name: o.name, names: map[*testenv.Process]string{}}
	replicas := 1
	if o.cluster {
		replicas = 3
		s.startCluster(t)
	} else {
		p := testenv.NATSProcess(t)
		s.NATS = []*testenv.Process{p}
		s.names[p] = s.label("nats-server")
		s.NATSURL = p.URL()
	}
	switch {
	case o.shareRedis != nil:
		s.RedisURL, s.RedisPrefix = o.shareRedis.RedisURL, o.shareRedis.RedisPrefix
	case o.ownRedis:
		s.Redis = testenv.RedisProcess(t)
		s.names[s.Redis] = s.label("redis-server")
		s.RedisURL, s.RedisPrefix = s.Redis.URL(), redisPrefix
	default:
		s.RedisURL, s.RedisPrefix = testenv.Redis(t)
	}
	s.env = []string{
		"HERALD_EMBEDDED_NATS=false",
		// The receivers listen on loopback: an exception to the egress
		// policy for 127.0.0.1 only, the policy itself stays on.
		"HERALD_EGRESS_ALLOW_CIDRS=127.0.0.1/32",
		"NATS_URL=" + s.NATSURL,
		"REDIS_URL=" + s.RedisURL,
		"HERALD_REDIS_PREFIX=" + s.RedisPrefix,
		"HERALD_ADMIN_TOKEN=" + adminToken,
		"HERALD_ENCRYPTION_KEY=" + encryptionKey(t),
		"HERALD_RETRY_SCHEDULE=" + retrySchedule,
		"HERALD_ACK_WAIT=" + ackWait.String(),
		"HERALD_BREAKER_FAILING_FOR=" + breakerFailingFor.String(),
		"HERALD_STREAM_REPLICAS=" + strconv.Itoa(replicas),
		"HERALD_LOG_LEVEL=info",
	}
	// Ingest first: on a fresh three-node cluster, Herald processes
	// creating the same streams at once wait 10 s for each stream (their
	// CreateOrUpdateStream calls go unanswered; see the report). Then the
	// router and the senders together, which only find the streams there.
	ingest := s.spawn(t, "herald-ingest", filepath.Join(bins, "herald-ingest"))
	s.Ingest = s.ready(t, ingest)
	router := s.spawn(t, "herald-router", filepath.Join(bins, "herald-router"))
	var senders []*service
	for i := range 2 {
		senders = append(senders, s.spawn(t, fmt.Sprintf("herald-sender-%c", 'A'+i), filepath.Join(bins, "herald-sender")))
	}
	s.Router = s.ready(t, router)
	for _, sv := range senders {
		s.Senders = append(s.Senders, s.ready(t, sv))
	}
	s.API = newAPI(s.Ingest.URL())

	nc, err := nats.Connect(s.NATSURL, nats.Name("faults-test"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("connect %s: %v", s.NATSURL, err)
	}
	t.Cleanup(nc.Close)
	s.NC = nc
	if s.JS, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return s
}

// label names a process of the stack: the stack's name, if any, first.
func (s *Stack) label(name string) string {
	if s.name == "" {
		return name
	}
	return s.name + "/" + name
}

// encryptionKey is a fresh HERALD_ENCRYPTION_KEY (32 random bytes,
// base64), shared by every service of a stack.
func encryptionKey(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// startCluster starts three nats-server processes routed to each other
// (same cluster name, distinct store dirs, monitoring on for /healthz).
func (s *Stack) startCluster(t *testing.T) {
	t.Helper()
	var cports, mports []string
	for range 3 {
		cports = append(cports, strconv.Itoa(testenv.FreePort(t)))
		mports = append(mports, strconv.Itoa(testenv.FreePort(t)))
	}
	var routes []string
	for _, p := range cports {
		routes = append(routes, "nats://127.0.0.1:"+p)
	}
	var urls []string
	for i := range 3 {
		p := testenv.NATSProcess(t,
			"--cluster_name", "herald-faults",
			"--cluster", "nats://127.0.0.1:"+cports[i],
			"--routes", strings.Join(routes, ","),
			"-m", mports[i])
		s.NATS = append(s.NATS, p)
		s.names[p] = s.label(fmt.Sprintf("nats-%d", i+1))
		s.natsMon = append(s.natsMon, "http://127.0.0.1:"+mports[i])
		urls = append(urls, p.URL())
	}
	s.NATSURL = strings.Join(urls, ",")
	// A node answers clients before the cluster has elected its JetStream
	// meta leader; Herald started then spends its first tries at creating
	// streams timing out.
	for i := range s.NATS {
		s.waitNodeHealthy(t, i, 30*time.Second)
	}
}

// service is a Herald process being started.
type service struct {
	name, bin string
	p         *testenv.Process
}

// spawn starts one Herald service on a free port; ready waits for it.
func (s *Stack) spawn(t *testing.T, name, bin string) *service {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	p := testenv.StartProcess(t, s.label(name), append(append([]string{}, s.env...), "HERALD_HTTP_ADDR="+addr), bin)
	p.SetURL("http://" + addr)
	s.names[p] = s.label(name)
	return &service{name: name, bin: bin, p: p}
}

// ready waits until the service answers /readyz 200 and returns its
// process. A port is free when FreePort picks it, not always when the
// service binds it (other tests run on this machine): a service that exits
// because its address is in use is started again on another port, up to
// three times.
func (s *Stack) ready(t *testing.T, sv *service) *testenv.Process {
	t.Helper()
	for try := 1; ; try++ {
		err := awaitReady(sv.p, 45*time.Second)
		if err == nil {
			return sv.p
		}
		if try < 3 && !sv.p.Running() && strings.Contains(sv.p.Output(), "address already in use") {
			t.Logf("%s: its port was taken before it could bind it; starting it on another", s.Name(sv.p))
			sv = s.spawn(t, sv.name, sv.bin)
			continue
		}
		t.Fatalf("%s: %v; output:\n%s", s.Name(sv.p), err, sv.p.Output())
	}
}

// awaitReady waits until p answers /readyz 200, at most within; it fails
// at once if p exits.
func awaitReady(p *testenv.Process, within time.Duration) error {
	deadline := time.Now().Add(within)
	for readyz(p) != http.StatusOK {
		select {
		case <-p.Done():
			return fmt.Errorf("exited before it was ready (%v)", p.ExitErr())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s", within)
		}
	}
	return nil
}

// Services are the Herald processes.
func (s *Stack) Services() []*testenv.Process {
	return append([]*testenv.Process{s.Ingest, s.Router}, s.Senders...)
}

func (s *Stack) all() []*testenv.Process {
	all := append([]*testenv.Process{}, s.NATS...)
	if s.Redis != nil {
		all = append(all, s.Redis)
	}
	return append(all, s.Services()...)
}

// Name is how a process is called in messages.
func (s *Stack) Name(p *testenv.Process) string { return s.names[p] }

// notePids remembers every process id, so that the end of the row can tell
// which processes were restarted.
func (s *Stack) notePids() {
	s.pids = map[*testenv.Process]int{}
	for _, p := range s.all() {
		s.pids[p] = p.Pid()
	}
}

// checkRestarts fails the test if any process other than those the fault
// restarted on purpose died or runs under a new process id, if one of those
// is not running again, and if a service printed a panic or (built with
// HERALD_FAULTS_RACE=1) a data race.
func (s *Stack) checkRestarts(t *testing.T, restarted []*testenv.Process) {
	t.Helper()
	on := map[*testenv.Process]bool{}
	for _, p := range restarted {
		on[p] = true
	}
	for _, p := range s.Services() {
		out := p.Output()
		for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
			if i := strings.Index(out, bad); i >= 0 {
				t.Errorf("%s printed %q:\n%s", s.Name(p), bad, out[i:min(len(out), i+3000)])
			}
		}
	}
	for _, p := range s.all() {
		switch {
		case !p.Running():
			t.Errorf("%s is not running at the end of the row (exit: %v)", s.Name(p), p.ExitErr())
		case on[p] && p.Pid() == s.pids[p]:
			t.Errorf("%s was to be restarted by the fault, but runs under its old pid", s.Name(p))
		case !on[p] && p.Pid() != s.pids[p]:
			t.Errorf("%s was restarted (pid %d -> %d) though the fault did not touch it", s.Name(p), s.pids[p], p.Pid())
		}
	}
}

// saveLogs copies every process's output to $HERALD_FAULTS_LOGS/<test>/,
// when set: the temporary directories they live in are removed at the end
// of the test, and a passing row's logs can be worth reading too.
func (s *Stack) saveLogs(t *testing.T) {
	root := os.Getenv("HERALD_FAULTS_LOGS")
	if root == "" {
		return
	}
	dir := filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("save logs: %v", err)
		return
	}
	for _, p := range s.all() {
		_ = os.WriteFile(filepath.Join(dir, s.Name(p)+".log"), []byte(p.Output()), 0o644)
	}
}

// readyz is the status of GET /readyz, or 0 when it does not answer.
func readyz(p *testenv.Process) int {
	st, _ := readyzChecks(p)
	return st
}

// readyzChecks is the status of GET /readyz and its checks (name: "ok",
// an error, or "degraded: " and an error), or 0 when it does not answer.
func readyzChecks(p *testenv.Process) (int, map[string]string) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(p.URL() + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var v struct{ Checks map[string]string }
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v.Checks
}

// waitReadyz waits until every process answers /readyz with want and
// returns how long that took. A process that stops answering at all fails
// the test: readiness must be reported, not timed out.
func (s *Stack) waitReadyz(t *testing.T, procs []*testenv.Process, want int, within time.Duration) time.Duration {
	t.Helper()
	return s.waitReadyzWith(t, procs, within, func(st int, _ map[string]string) bool { return st == want },
		fmt.Sprintf("want %d", want))
}

// waitReadyzWith waits until every process's /readyz answer satisfies ok
// and returns how long that took; what says what ok wants, for the error.
func (s *Stack) waitReadyzWith(t *testing.T, procs []*testenv.Process, within time.Duration, ok func(int, map[string]string) bool, what string) time.Duration {
	t.Helper()
	start := time.Now()
	var mu sync.Mutex
	type answer struct {
		status int
		checks map[string]string
		ok     bool
	}
	got := map[string]answer{}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := start.Add(within)
			for {
				st, checks := readyzChecks(p)
				a := answer{st, checks, ok(st, checks)}
				mu.Lock()
				got[s.Name(p)] = a
				mu.Unlock()
				if a.ok || time.Now().After(deadline) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for name, a := range got {
		if !a.ok {
			t.Errorf("%s: /readyz answered %d %v, %s within %s", name, a.status, a.checks, what, within)
		}
	}
	return time.Since(start)
}

// nodeName asks a cluster node's monitoring port for its server name.
func (s *Stack) nodeName(i int) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(s.natsMon[i] + "/varz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct {
		Name string `json:"server_name"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v.Name
}

// waitNodeHealthy waits until node i reports JetStream healthy (its streams
// and consumers current) on /healthz.
func (s *Stack) waitNodeHealthy(t *testing.T, i int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c := http.Client{Timeout: 2 * time.Second}
	testenv.Eventually(t, within, func() bool {
		resp, err := c.Get(s.natsMon[i] + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "nats node %d not healthy within %s", i+1, within)
	return time.Since(start)
}

// streamLeader is the server name leading stream name.
func (s *Stack) streamLeader(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := s.JS.Stream(ctx, name)
	if err != nil || st.CachedInfo().Cluster == nil {
		return ""
	}
	return st.CachedInfo().Cluster.Leader
}

// ---- API client ----

// newAPI returns a client of ingest's API at base. The producer posts
// every event on a goroutine of its own while ingest is being faulted, so
// the transport keeps up to 256 connections to reuse, and the 3 s timeout
// ends a try at a hung ingest so that the producer retries it.
func newAPI(base string) *apitest.Client {
	return apitest.New(base, &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256},
	})
}

// Tenant as POST /v1/tenants answers.
type Tenant struct {
	ID     string `json:"id"`
	APIKey string `json:"api_key"`
}

// Endpoint as the API shows it.
type Endpoint struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}
