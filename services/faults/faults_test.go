package faults

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/testenv"
)

// outage is how long each fault lasts under load.
const outage = 4 * time.Second

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
// process picks it from the stack, and dupWhy is as for run.finish.
func testKillRestart(t *testing.T, name string, process func(*Stack) *testenv.Process, dupWhy string) {
	t.Helper()
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	p := process(s)
	r.kill9(name, p)
	r.restartAfterOutage(p)
	r.finish(fmt.Sprintf("kill -9 %s, restart after %s", name, outage), dupWhy)
}

// stopDependency starts the outage of a dependency every service needs
// (NATS, Redis): it stops p, named name, with SIGTERM and waits until every
// service answers /readyz 503, returning how long that took.
func (r *run) stopDependency(name string, p *testenv.Process) (down time.Duration) {
	r.t.Helper()
	r.fault("stop " + name)
	p.Stop()
	return r.s.waitReadyz(r.t, r.s.Services(), http.StatusServiceUnavailable, 10*time.Second)
}

// restartDependency ends the outage of a dependency every service needs
// (NATS, Redis): it starts p again, ends the fault, waits until every
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
	r.finish(fmt.Sprintf("kill -9 sender A, restart after %s", outage),
		"a job whose 2xx sender A received but had not acked yet is redelivered to sender B after AckWait (2s)")
}

func TestFaultRouterKill(t *testing.T) {
	testKillRestart(t, "router", func(s *Stack) *testenv.Process { return s.Router },
		"none expected: events the router took but had not acked are routed again, and their jobs carry the same Nats-Msg-Id, so DELIVERIES stores them once")
}

func TestFaultNATSRestart(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	n := s.NATS[0]
	down := r.stopDependency("nats-server (SIGTERM)", n)
	hold(outage - down)
	r.restartDependency(n, down, "")
	r.finish("NATS stop, start after 4s (file store)",
		"acks of deliveries made just before the stop never reached the server; those jobs are sent again after the restart")
}

func TestFaultRedisFlushed(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	down := r.stopDependency("redis-server", s.Redis)
	before := r.rcv.Delivered()
	testenv.Eventually(t, outage, func() bool { return r.rcv.Delivered() >= before+rate/2 },
		"deliveries stopped while Redis was down")
	hold(outage - time.Since(r.faultAt))
	// No persistence: Redis comes back empty, a flushed cache.
	r.restartDependency(s.Redis, down, "deliveries went on meanwhile")
	r.finish("Redis stop, start empty after 4s",
		"none expected: Redis holds only the endpoint cache and the history index, never a job")
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
	r.finish("receiver refused 4s, then slow (0.8s of 1s timeout) 4s",
		"a 2xx cut off when the receiver's listener closed may have reached the sender anyway or not; either way the job is retried")
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
	r.finish("NATS R3: kill a node, restart; kill another",
		"acks sent to a node as it died, or lost during a leader change, redeliver jobs that were already delivered")
}

func TestFaultIngestKill(t *testing.T) {
	testKillRestart(t, "ingest", func(s *Stack) *testenv.Process { return s.Ingest },
		"none expected: a retried POST of an event stored before the kill is answered \"duplicate\" and stored once")
}
