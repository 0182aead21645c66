package faults

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
)

// outage is how long each fault lasts under load.
const outage = 4 * time.Second

// reroutePast is how often the router samples its routing floor
// (pkg/router/reroute.go): its checkpoint for a lost DELIVERIES.
const reroutePast = 3 * time.Second

// Reasons shared by several rows' allowances.
const (
	// A sender that dies (or loses its server) after sending a request but
	// before storing its outcome gives the job back with its count as it
	// was: the next sender makes that attempt again, with the same number
	// (docs/delivery.md, "Attempt numbers").
	whyOutcomeLost = "an outcome being stored when the fault struck (the ack of a 2xx, a retry's schedule, a dead letter) was lost: " +
		"the job came back after AckWait (2s) with its count unchanged, and that attempt was made again with the same number"
	// A nats-server process crash loses no message, but the last acks of a
	// consumer (they reach its store asynchronously) and, for the work
	// queue, the ids of jobs already done (its duplicate window is rebuilt
	// from the messages it still holds).
	whyServerCrash = "nats-server stores a consumer's acks asynchronously, so the kill lost the router's last ones and the events it had just routed " +
		"came to it again; DELIVERIES, a work queue, rebuilds its duplicate window from the jobs it still holds, so it stored those events' jobs " +
		"again although they were done, and they ran again from attempt 1 (an always-fail job to a second dead letter)"
	// A lost DELIVERIES is routed again from the router's checkpoint.
	whyRerouted = "jobs of events routed since the router's checkpoint were created again from EVENTS, starting at attempt 1, " +
		"next to the lost jobs' retries that RETRIES still held"
)

// kill9 starts the fault of a crash: p, named name, is killed with
// SIGKILL, so it neither drains nor acks what it holds.
func (r *run) kill9(name string, p *testenv.Process) {
	r.fault("kill -9 " + name)
	p.Kill()
}

// restartAfterOutage lets the fault last outage, starts p again, waits
// until it answers /readyz and ends the fault. p is the one process the
// fault restarts on purpose.
func (r *run) restartAfterOutage(p *testenv.Process) {
	hold(outage)
	p.Start()
	p.WaitHTTP(p.URL()+"/readyz", 30*time.Second)
	r.repaired(p)
}

// testKillRestart is the row of a process that crashes under load and is
// started again after outage, with nothing to check while it is down;
// process picks it from the stack, and allow is as for run.finish.
func testKillRestart(t *testing.T, name string, process func(*Stack) *testenv.Process, allow allowance) {
	t.Helper()
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	p := process(s)
	r.kill9(name, p)
	r.restartAfterOutage(p)
	r.finish(fmt.Sprintf("kill -9 %s, restart after %s", name, outage), allow)
}

// stopDependency starts the outage of a dependency every service needs
// (NATS): it stops p, named name, with SIGTERM (with SIGKILL when
// kill) and waits until every service answers /readyz 503, returning how
// long that took.
func (r *run) stopDependency(name string, p *testenv.Process, kill bool) (down time.Duration) {
	r.t.Helper()
	if kill {
		r.fault("kill -9 " + name)
		p.Kill()
	} else {
		r.fault("stop " + name)
		p.Stop()
	}
	return r.s.waitReadyz(r.t, r.s.Services(), http.StatusServiceUnavailable, 10*time.Second)
}

// restartDependency ends the outage of a dependency every service needs
// (NATS): it starts p again, ends the fault, waits until every
// service answers /readyz 200, and notes how long the services took to
// notice the stop (down, as the caller measured it) and the start. also,
// when not empty, is what else the row saw during the outage, for the note.
func (r *run) restartDependency(p *testenv.Process, down time.Duration, also string) {
	r.t.Helper()
	p.Start()
	r.repaired(p)
	up := r.s.waitReadyz(r.t, r.s.Services(), http.StatusOK, 30*time.Second)
	note := fmt.Sprintf("every service answered /readyz 503 within %s of the stop and 200 within %s of the start",
		down.Round(10*time.Millisecond), up.Round(10*time.Millisecond))
	if also != "" {
		note += "; " + also
	}
	r.note("%s", note)
}

func TestFaultSenderKill(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	a, b := s.Senders[0], s.Senders[1]
	r.kill9("sender A", a)
	if a.Running() {
		t.Fatal("sender A survived SIGKILL")
	}
	s.waitReadyz(t, []*testenv.Process{s.Ingest, s.Router, b}, http.StatusOK, 2*time.Second)
	r.restartAfterOutage(a)
	r.finish(fmt.Sprintf("kill -9 sender A, restart after %s", outage), allowance{
		repeat: "sender A was killed between sending requests and storing their outcomes: " + whyOutcomeLost,
	})
}

func TestFaultRouterKill(t *testing.T) {
	// None expected: events the router took but had not acked are routed
	// again, and their jobs carry the same Nats-Msg-Id, so DELIVERIES
	// stores them once.
	testKillRestart(t, "router", func(s *Stack) *testenv.Process { return s.Router }, allowance{})
}

func TestFaultIngestKill(t *testing.T) {
	// None expected: a retried POST of an event stored before the kill is
	// answered "duplicate" and stored once.
	testKillRestart(t, "ingest", func(s *Stack) *testenv.Process { return s.Ingest }, allowance{})
}

func TestFaultNATSRestart(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	n := s.NATS[0]
	down := r.stopDependency("nats-server (SIGTERM)", n, false)
	hold(outage - down)
	r.restartDependency(n, down, "")
	r.finish("NATS stop, start after 4s (file store)", allowance{
		repeat: "acks and outcomes sent as nats-server stopped never reached it: " + whyOutcomeLost,
	})
}

// TestFaultNATSKill kills the only nats-server with SIGKILL and starts it
// again on the same store directory. What the sync policy promises
// (nats-server's default, which Herald keeps: README, HERALD_NATS_SYNC):
// the file store fsyncs every 2 minutes, so a host crash (power loss,
// kernel panic) may lose what was written in the last interval, but a
// process crash loses nothing the server had written: its writes are in the
// operating system's page cache, which outlives the process. So the row
// allows no loss: every event acknowledged before the kill must be
// delivered or dead-lettered exactly as without it.
func TestFaultNATSKill(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	n := s.NATS[0]
	down := r.stopDependency("nats-server", n, true)
	hold(outage - down)
	r.restartDependency(n, down, "restarted on the same store dir: a process kill keeps what the OS holds, so nothing acknowledged may be lost")
	r.finish("NATS kill -9, start after 4s on the same store", allowance{
		repeat:    "acks and outcomes sent as nats-server died never reached it: " + whyOutcomeLost + "; and " + whyServerCrash,
		deadTwice: whyServerCrash,
	})
}

// stopRedis starts an outage of Redis, which no role needs to work (the
// cache reads the store, limits hold per process): it stops s.Redis and
// waits until every service stays ready and reports Redis degraded in
// /readyz, returning how long that took. A Redis blip must not take the
// ingest pods out of their Service.
func (r *run) stopRedis() (down time.Duration) {
	r.t.Helper()
	r.fault("stop redis-server")
	r.s.Redis.Stop()
	degraded := func(st int, c map[string]string) bool {
		return st == http.StatusOK && strings.HasPrefix(c["redis"], "degraded: ")
	}
	return r.s.waitReadyzWith(r.t, r.s.Services(), 10*time.Second, degraded, "want 200 with redis degraded")
}

// startRedis ends the outage stopRedis began, with no persistence: Redis
// comes back empty, a flushed cache. It waits until every service reports
// Redis ok, and notes how long the services took to notice the stop (down)
// and the start; also, when not empty, is what else the row saw.
func (r *run) startRedis(down time.Duration, also string) {
	r.t.Helper()
	r.s.Redis.Start()
	r.repaired(r.s.Redis)
	up := r.s.waitReadyzWith(r.t, r.s.Services(), 30*time.Second, func(st int, c map[string]string) bool { return st == http.StatusOK && c["redis"] == "ok" },
		"want 200 with redis ok")
	note := fmt.Sprintf("every service stayed ready (/readyz 200) and reported Redis degraded within %s of the stop and ok within %s of the start",
		down.Round(10*time.Millisecond), up.Round(10*time.Millisecond))
	if also != "" {
		note += "; " + also
	}
	r.note("%s", note)
}

// TestFaultRedisRestartEmpty stops Redis under load: deliveries go on, and
// every service stays ready.
func TestFaultRedisRestartEmpty(t *testing.T) {
	s := startStack(t, stackOptions{ownRedis: true})
	r := begin(t, s)
	down := r.stopRedis()
	before := r.rcv.Delivered("ok")
	testenv.Eventually(t, outage, func() bool { return r.rcv.Delivered("ok") >= before+r.rate/2 },
		"deliveries stopped while Redis was down")
	hold(outage - time.Since(r.faultAt))
	r.startRedis(down, "deliveries went on meanwhile")
	// None expected: Redis holds the endpoint cache, the shared limits and
	// the history index, never a job or an attempt count.
	r.finish("Redis stop, start empty after 4s", allowance{})
}

func TestFaultRedisFlushAll(t *testing.T) {
	s := startStack(t, stackOptions{ownRedis: true})
	r := begin(t, s)
	r.fault("FLUSHALL on Redis")
	keys := testenv.FlushRedis(t, s.RedisURL)
	r.repaired()
	if keys == 0 {
		t.Errorf("FLUSHALL found Redis empty: Herald was not using it")
	}
	r.note("FLUSHALL removed %d keys (endpoint cache, limits, breaker, history index)", keys)
	// Redis never went away: nothing has a reason to report not-ready.
	s.waitReadyz(t, s.Services(), http.StatusOK, time.Second)
	hold(outage)
	// None expected: the cache is refilled from the KV store, the limits
	// and breaker start afresh, and no attempt count lives in Redis.
	r.finish("Redis FLUSHALL mid-load", allowance{})
}

// TestFaultRedisDownAtTheCap takes Redis away for 10 s while the healthy
// endpoint's cap (the default, 10 in flight) is refusing jobs: the
// endpoint answers in 300 ms at 60 events a second, which would take 18
// requests in flight. The cap moves from Redis to each sender's memory and
// back; the refused jobs wait without using attempts, and no job is
// dead-lettered without its requests.
func TestFaultRedisDownAtTheCap(t *testing.T) {
	const (
		capRate     = 60
		capLatency  = 300 * time.Millisecond
		redisOutage = 10 * time.Second
	)
	s := startStack(t, stackOptions{ownRedis: true})
	r := beginAt(t, s, capRate)
	refused := func() float64 {
		return metricSum(s.Senders, "herald_sender_delayed_total", `reason="concurrency"`)
	}
	start := refused()
	r.rcv.SetEndpointLatency("ok", capLatency)
	// The cap is refusing: a second's worth of the endpoint's events beyond
	// what 10 slots serve.
	testenv.Eventually(t, 10*time.Second, func() bool { return refused() >= start+capRate/2 },
		"herald_sender_delayed_total{reason=\"concurrency\"} did not rise with the healthy endpoint at %s and %d events/s", capLatency, capRate)
	atStop := refused()
	down := r.stopRedis()
	hold(redisOutage - down)
	during := refused()
	if during <= atStop {
		t.Errorf("herald_sender_delayed_total{reason=\"concurrency\"} stayed at %v while Redis was down: the cap refused nothing", during)
	}
	r.startRedis(down, fmt.Sprintf("the cap refused %.0f jobs before Redis went down and %.0f while it was down (herald_sender_delayed_total{reason=\"concurrency\"})",
		atStop-start, during-atStop))
	r.rcv.SetEndpointLatency("ok", 0)
	r.finish("Redis down 10s while the cap (10) refuses; start empty", allowance{})
}

func TestFaultReceiverDownThenSlow(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	r.fault("receiver down (connection refused)")
	r.rcv.Down()
	hold(outage)
	r.rcv.SetLatency(slowAnswer)
	r.rcv.Up(t)
	t.Logf("receiver up, answering after %s (timeout %dms)", slowAnswer, endpointTimeout)
	hold(outage)
	r.rcv.SetLatency(receiverLatency)
	r.repaired()
	s.waitReadyz(t, s.Services(), http.StatusOK, time.Second) // an endpoint is not a dependency
	r.finish("receiver refused 4s, then slow (0.8s of 1s timeout) 4s", allowance{
		unseen: "the receiver's listener was closed for 4s: attempts made then were refused at connect and never reached it",
		beyond: "answers cut off as the listener closed, or written after the sender's 1s timeout while the receiver was slow, " +
			"never reached Herald, which made the next attempt; and a first-fail event whose first attempt was refused " +
			"fails the first request the receiver sees, so it needs one attempt more",
	})
}

func TestFaultDeliveriesDeleted(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	// The router samples its routing floor every 3 s; a few samples before
	// the loss make it route again from its checkpoint, not from the
	// fallback of a stack younger than its samples (a minute back).
	hold(2 * reroutePast)
	r.fault("delete stream DELIVERIES")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := s.JS.DeleteStream(ctx, bus.StreamDeliveries)
	cancel()
	if err != nil {
		t.Fatalf("delete DELIVERIES: %v", err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := s.JS.Stream(ctx, bus.StreamDeliveries)
		return err == nil
	}, "Herald's stream keeper did not recreate DELIVERIES within 20s")
	r.repaired()
	hold(outage)
	r.note("DELIVERIES recreated by Herald %s after it was deleted; router log: %s", r.repairedAt.Sub(r.faultAt).Round(10*time.Millisecond),
		strings.Join(logLines(s.Router, "routed again", "routing floor"), " | "))
	r.finish("DELIVERIES deleted mid-load, recreated by Herald", allowance{
		repeat:    whyRerouted,
		beyond:    whyRerouted,
		deadTwice: "an always-fail event whose lost job's retries and re-created job both ran to max_attempts is dead-lettered by each: " + whyRerouted,
	})
}

// TestFaultTwoDeploymentsOneRedis runs two deployments, each with its own
// NATS, data, ingest, router and senders, on one Redis with the same
// HERALD_REDIS_PREFIX, both under load with the same event ids: nothing in
// Redis may make one deployment's attempt numbers or deliveries depend on
// the other's (a skip counter kept in Redis once did).
func TestFaultTwoDeploymentsOneRedis(t *testing.T) {
	a := startStack(t, stackOptions{name: "A"})
	b := startStack(t, stackOptions{name: "B", shareRedis: a})
	ra := beginAt(t, a, rate/2)
	rb := beginAt(t, b, rate/2)
	ra.fault("deployment B shares deployment A's Redis and prefix")
	rb.fault("deployment A shares deployment B's Redis and prefix")
	hold(outage)
	ra.repaired()
	rb.repaired()
	ra.stopLoad()
	rb.stopLoad()
	ra.finish("two deployments, one Redis and prefix: A", allowance{})
	rb.finish("two deployments, one Redis and prefix: B", allowance{})
}

func TestFaultNATSClusterNodeLoss(t *testing.T) {
	s := startStack(t, stackOptions{cluster: true})
	r := begin(t, s)
	index := func(name string) int {
		for i := range s.NATS {
			if s.nodeName(i) == name {
				return i
			}
		}
		return -1
	}
	first := index(s.streamLeader("EVENTS"))
	if first < 0 {
		first = 0
	}
	r.fault("kill -9 nats node " + s.Name(s.NATS[first]) + " (EVENTS leader)")
	s.NATS[first].Kill()
	hold(outage)
	s.NATS[first].Start()
	h1 := s.waitNodeHealthy(t, first, 60*time.Second)
	second := index(s.streamLeader("DELIVERIES"))
	if second < 0 || second == first {
		second = (first + 1) % len(s.NATS)
	}
	t.Logf("node %s healthy %s after its restart; kill -9 node %s", s.Name(s.NATS[first]), h1.Round(10*time.Millisecond), s.Name(s.NATS[second]))
	s.NATS[second].Kill()
	hold(outage)
	s.NATS[second].Start()
	h2 := s.waitNodeHealthy(t, second, 60*time.Second)
	r.repaired(s.NATS[first], s.NATS[second])
	r.note("R3 cluster: killed %s, restarted (healthy after %s), then killed %s, restarted (healthy after %s)",
		s.Name(s.NATS[first]), h1.Round(10*time.Millisecond), s.Name(s.NATS[second]), h2.Round(10*time.Millisecond))
	r.finish("NATS R3: kill a node, restart; kill another", allowance{
		repeat: "acks and outcomes sent to a node as it died, or lost in a leader change: " + whyOutcomeLost,
	})
}
