package faults

import (
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/testenv"
)

// outage is how long each fault lasts under load.
const outage = 4 * time.Second

func TestFaultSenderKill(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	a, b := s.Senders[0], s.Senders[1]
	r.fault("kill -9 sender A")
	a.Kill()
	if a.Running() {
		t.Fatal("sender A survived SIGKILL")
	}
	s.waitReadyz(t, []*testenv.Process{s.Ingest, s.Router, b}, http.StatusOK, 2*time.Second)
	hold(outage)
	a.Start()
	a.WaitHTTP(a.URL()+"/readyz", 30*time.Second)
	r.repaired(a)
	r.finish("kill -9 sender A, restart after 4s",
		"a job whose 2xx sender A received but had not acked yet is redelivered to sender B after AckWait (2s)")
}

func TestFaultRouterKill(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	rt := s.Router
	r.fault("kill -9 router")
	rt.Kill()
	hold(outage)
	rt.Start()
	rt.WaitHTTP(rt.URL()+"/readyz", 30*time.Second)
	r.repaired(rt)
	r.finish("kill -9 router, restart after 4s",
		"none expected: events the router took but had not acked are routed again, and their jobs carry the same Nats-Msg-Id, so DELIVERIES stores them once")
}

func TestFaultNATSRestart(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	n := s.NATS[0]
	r.fault("stop nats-server (SIGTERM)")
	n.Stop()
	down := s.waitReadyz(t, s.Services(), http.StatusServiceUnavailable, 10*time.Second)
	hold(outage - down)
	n.Start()
	r.repaired(n)
	up := s.waitReadyz(t, s.Services(), http.StatusOK, 30*time.Second)
	r.note("every service answered /readyz 503 within %s of the stop and 200 within %s of the start",
		down.Round(10*time.Millisecond), up.Round(10*time.Millisecond))
	r.finish("NATS stop, start after 4s (file store)",
		"acks of deliveries made just before the stop never reached the server; those jobs are sent again after the restart")
}

func TestFaultRedisFlushed(t *testing.T) {
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	r.fault("stop redis-server")
	s.Redis.Stop()
	down := s.waitReadyz(t, s.Services(), http.StatusServiceUnavailable, 10*time.Second)
	before := r.rcv.Delivered()
	testenv.Eventually(t, outage, func() bool { return r.rcv.Delivered() >= before+rate/2 },
		"deliveries stopped while Redis was down")
	hold(outage - time.Since(r.faultAt))
	s.Redis.Start() // no persistence: it comes back empty, a flushed cache
	r.repaired(s.Redis)
	up := s.waitReadyz(t, s.Services(), http.StatusOK, 30*time.Second)
	r.note("every service answered /readyz 503 within %s of the stop and 200 within %s of the start; deliveries went on meanwhile",
		down.Round(10*time.Millisecond), up.Round(10*time.Millisecond))
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
	s := startStack(t, stackOptions{})
	r := begin(t, s)
	in := s.Ingest
	r.fault("kill -9 ingest")
	in.Kill()
	hold(outage)
	in.Start()
	in.WaitHTTP(in.URL()+"/readyz", 30*time.Second)
	r.repaired(in)
	r.finish("kill -9 ingest, restart after 4s",
		"none expected: a retried POST of an event stored before the kill is answered \"duplicate\" and stored once")
}
