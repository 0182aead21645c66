package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/testenv"
)

// TestMain doubles as a helper HTTP server for TestStartProcess.
func TestMain(m *testing.M) {
	if addr := os.Getenv("TESTENV_HELPER_HTTP"); addr != "" {
		fmt.Println("helper listening on", addr)
		http.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {})
		fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, nil))
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// quick is for calls inside Eventually: a request lost in a reconnect must
// not outlive the polling deadline.
func quick() context.Context {
	c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	time.AfterFunc(time.Second, cancel)
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func TestNATSEmbeddedPublishConsume(t *testing.T) {
	nc, js := connect(t, testenv.NATS(t))
	if !atLeast212(nc.ConnectedServerVersion()) {
		t.Fatalf("server %s", nc.ConnectedServerVersion())
	}
	st, err := js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.CreateConsumer(ctx(t), jetstream.ConsumerConfig{Durable: "sender", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int32
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if string(m.Data()) == "job" {
			got.Add(1)
		}
		_ = m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	for i := range 3 {
		if _, err := js.Publish(ctx(t), fmt.Sprintf("jobs.%d", i), []byte("job")); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return got.Load() == 3 }, "consumer did not get 3 messages")
	testenv.Eventually(t, 5*time.Second, func() bool {
		info, err := st.Info(quick())
		return err == nil && info.State.Msgs == 0
	}, "work queue not drained after acks")
}

func TestNATSServerRestartKeepsMessages(t *testing.T) {
	e := testenv.NATSServer(t)
	url := e.URL()
	_, js := connect(t, url)
	if _, err := js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx(t), "ev", []byte("x")); err != nil {
		t.Fatal(err)
	}
	e.Restart(t)
	if e.URL() != url {
		t.Fatalf("URL changed %s -> %s", url, e.URL())
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		st, err := js.Stream(quick(), "EV")
		return err == nil && st.CachedInfo().State.Msgs == 1
	}, "stream EV lost its message across the restart")
}

func TestNATSProcessKillAndRestartKeepsFileMessage(t *testing.T) {
	p := testenv.NATSProcess(t)
	nc, js := connect(t, p.URL())
	if !atLeast212(nc.ConnectedServerVersion()) {
		t.Fatalf("server %s", nc.ConnectedServerVersion())
	}
	if _, err := js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "DUR", Subjects: []string{"dur"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx(t), "dur", []byte("survives")); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if p.Running() {
		t.Fatal("still running after Kill")
	}
	p.Start()
	testenv.Eventually(t, 10*time.Second, func() bool {
		st, err := js.Stream(quick(), "DUR")
		if err != nil {
			return false
		}
		m, err := st.GetMsg(quick(), 1)
		return err == nil && string(m.Data) == "survives"
	}, "message lost across SIGKILL")
	p.Stop()
	if !strings.Contains(p.Output(), "Server is ready") {
		t.Fatalf("log lacks readiness line:\n%s", p.Output())
	}
}

func TestRedisSetGet(t *testing.T) {
	url, prefix := testenv.Redis(t)
	_, prefix2 := testenv.Redis(t)
	if prefix == prefix2 || !strings.Contains(prefix, t.Name()) {
		t.Fatalf("prefixes %q %q", prefix, prefix2)
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Set(ctx(t), prefix+"k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx(t), prefix+"k").Result(); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}

func TestRedisProcessStopStart(t *testing.T) {
	p := testenv.RedisProcess(t)
	opt, _ := redis.ParseURL(p.URL())
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Set(ctx(t), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if err := rdb.Ping(ctx(t)).Err(); err == nil {
		t.Fatal("ping succeeded while stopped")
	}
	p.Start()
	testenv.Eventually(t, 5*time.Second, func() bool { return rdb.Ping(quick()).Err() == nil }, "redis back")
	if err := rdb.Get(ctx(t), "k").Err(); err != redis.Nil {
		t.Fatalf("restarted redis not empty: %v", err)
	}
	p.Kill()
	p.Start()
	testenv.Eventually(t, 5*time.Second, func() bool { return rdb.Ping(quick()).Err() == nil }, "redis back after kill")
}

func TestStartProcessWaitHTTP(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.StartProcess(t, "helper", []string{"TESTENV_HELPER_HTTP=" + addr}, exe)
	p.SetURL("http://" + addr)
	p.WaitTCP(addr, 10*time.Second)
	p.WaitHTTP(p.URL()+"/ready", 10*time.Second)
	testenv.WaitHTTP(t, p.URL()+"/ready", time.Second)
	p.Stop()
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if !strings.Contains(p.Output(), "helper listening on "+addr) {
		t.Fatalf("output: %q", p.Output())
	}
	p.Start()
	p.WaitHTTP(p.URL()+"/ready", 10*time.Second)
}

func TestEventually(t *testing.T) {
	n := 0
	testenv.Eventually(t, time.Second, func() bool { n++; return n == 3 }, "cond never true")
	lg := testenv.Logger(t)
	lg.Info().Int("n", n).Msg("logger works")
}

func atLeast212(v string) bool {
	var major, minor int
	_, err := fmt.Sscanf(v, "%d.%d", &major, &minor)
	return err == nil && (major > 2 || major == 2 && minor >= 12)
}

// verdict records how Unavailable ended a test, instead of ending it.
type verdict struct {
	testing.TB
	fatal, skip string
}

func (v *verdict) Helper()                           {}
func (v *verdict) Fatalf(format string, args ...any) { v.fatal = fmt.Sprintf(format, args...) }
func (v *verdict) Skipf(format string, args ...any)  { v.skip = fmt.Sprintf(format, args...) }

func TestUnavailableFailsUnderCI(t *testing.T) {
	for _, c := range []struct {
		ci   string
		fail bool
	}{{"true", true}, {"1", true}, {"TRUE", true}, {"", false}, {"false", false}, {"0", false}, {"yes please", false}} {
		t.Setenv("CI", c.ci)
		v := &verdict{TB: t}
		testenv.Unavailable(v, "no %s here", "redis-server")
		switch {
		case c.fail && (v.fatal == "" || v.skip != ""):
			t.Errorf("CI=%q: skipped (%q); want the test failed", c.ci, v.skip)
		case !c.fail && (v.skip == "" || v.fatal != ""):
			t.Errorf("CI=%q: failed (%q); want the test skipped", c.ci, v.fatal)
		case c.fail && !strings.Contains(v.fatal, "no redis-server here"):
			t.Errorf("CI=%q: failure %q does not say what is missing", c.ci, v.fatal)
		case !c.fail && !strings.Contains(v.skip, "SKIPPING: NO REDIS-SERVER HERE"):
			t.Errorf("CI=%q: skip message %q is not loud", c.ci, v.skip)
		}
	}
}

func TestFlushRedis(t *testing.T) {
	p := testenv.RedisProcess(t)
	opt, _ := redis.ParseURL(p.URL())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	for _, k := range []string{"a", "b:c"} {
		if err := rdb.Set(ctx(t), k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n := testenv.FlushRedis(t, p.URL()); n != 2 {
		t.Errorf("FlushRedis = %d keys; want the 2 it flushed", n)
	}
	if n, err := rdb.DBSize(ctx(t)).Result(); err != nil || n != 0 {
		t.Fatalf("after FlushRedis: %d keys, %v; want none", n, err)
	}
}

// A closed port refuses connections, and no server can take it while the
// test runs: the refusal a test asks for cannot turn into an answer.
func TestClosedPort(t *testing.T) {
	port := testenv.ClosedPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s: connected, want refused", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("listen on %s: a server could take the closed port", addr)
	}
}
