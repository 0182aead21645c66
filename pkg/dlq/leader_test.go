package dlq

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
)

// A read of the DLQ on a three-node cluster sees every message stored,
// also right after a node was killed and restarted while more were stored:
// a reader on a replica still catching up listed a DLQ without its newest
// dead letters (seen in the fault suite's R3 row). readerOnLeader keeps a
// reader only where the copy is complete (TestCaughtUp).
func TestReaderRunsOnStreamLeader(t *testing.T) {
	c := startCluster(t, 3)
	urls := c.urls
	js := testenv.ConnectJetStream(t, urls[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var st jetstream.Stream
	testenv.Eventually(t, 30*time.Second, func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		var err error
		st, err = js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{Name: bus.StreamDLQ, Subjects: []string{bus.DLQPrefix + ">"}, Replicas: 3})
		if err != nil {
			t.Logf("create R3 stream: %v", err)
		}
		return err == nil
	}, "R3 stream not created")
	for i := range 20 {
		if _, err := js.Publish(ctx, bus.DLQSubject("tn_a", "ep_a"), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	checkReads := func(want int) {
		t.Helper()
		for range 5 {
			// A read may find no JetStream API to answer while the cluster
			// forms or elects (the API answers 503 then, and clients retry);
			// what it reads must be complete.
			var got []string
			var err error
			testenv.Eventually(t, 30*time.Second, func() bool {
				got = got[:0]
				err = scan(ctx, js, bus.StreamDLQ, bus.DLQSubject("tn_a", "ep_a"), position{}, 0, 7, func(m jetstream.Msg, _ *jetstream.MsgMetadata) (bool, error) {
					got = append(got, string(m.Data()))
					return true, nil
				})
				return err == nil || !bus.IsRetryable(err)
			}, "no read answered: %v", lazyErrOf(&err))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != want {
				t.Fatalf("scan read %d of %d messages", len(got), want)
			}
		}
	}
	checkReads(20)
	// A node killed and back, while messages are stored: the case that
	// listed a DLQ short.
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("no stream info: %v", err)
	}
	i := c.index(info.Cluster.Leader)
	c.stop(i)
	for n := 20; n < 40; n++ {
		// The first publishes wait out the election after the kill.
		testenv.Eventually(t, 30*time.Second, func() bool {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			defer pcancel()
			// An id: a publish stored but answered too late is not stored twice.
			_, err := js.Publish(pctx, bus.DLQSubject("tn_a", "ep_a"), []byte(fmt.Sprint(n)), jetstream.WithMsgID(fmt.Sprint(n)))
			return err == nil
		}, "message %d not stored after the leader's node was killed", n)
	}
	c.start(t, i)
	checkReads(40)
}

// cluster is n embedded JetStream servers routed into one cluster on
// loopback.
type cluster struct {
	urls    []string
	opts    []*server.Options
	servers []*server.Server
}

func (c *cluster) index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return 0
}

func (c *cluster) stop(i int) { c.servers[i].Shutdown(); c.servers[i].WaitForShutdown() }

func (c *cluster) start(t *testing.T, i int) {
	t.Helper()
	s, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("server %d not ready", i+1)
	}
	c.servers[i] = s
	c.urls[i] = s.ClientURL()
}

// startCluster starts n embedded JetStream servers routed into one cluster
// on loopback.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	ports := make([]int, 2*n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var routes []*url.URL
	for _, p := range ports[:n] {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &cluster{urls: make([]string, n), servers: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       ports[n+i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "dlq-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
			NoSigs:     true,
		})
		c.start(t, i)
	}
	return c
}

func TestCaughtUp(t *testing.T) {
	stream := &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{
		{Name: "n2", Current: true},
		{Name: "n3", Current: true, Lag: 4},
		{Name: "n4", Current: false},
	}}
	for server, want := range map[string]bool{"n1": true, "n2": true, "n3": false, "n4": false, "n5": false} {
		if got := caughtUp(stream, server); got != want {
			t.Errorf("caughtUp(%s) = %v, want %v", server, got, want)
		}
	}
	if !caughtUp(nil, "any") || !caughtUp(&jetstream.ClusterInfo{}, "any") {
		t.Error("a single server (no cluster or no leader named) must count as caught up")
	}
}

// lazyErr prints *err when a failure message is formatted.
type lazyErr struct{ err *error }

func (l lazyErr) String() string { return fmt.Sprint(*l.err) }

func lazyErrOf(err *error) lazyErr { return lazyErr{err} }
