package natsembed_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/natsembed"
)

func start(t *testing.T, cfg natsembed.Config) *natsembed.Server {
	t.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	cfg.Logger = testenv.Logger(t)
	s, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// publishAndFetch round-trips one message through a file-stored stream.
func publishAndFetch(t *testing.T, nc *nats.Conn, stream string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	if _, err := js.Publish(ctx, stream+".a", []byte("hello")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if string(msg.Data()) != "hello" {
		t.Fatalf("got %q", msg.Data())
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTripInProcessAndTCP(t *testing.T) {
	s := start(t, natsembed.Config{Port: -1, ServerName: "embed-test"})
	if s.Port() == 0 || s.ClientURL() != "nats://127.0.0.1:"+strconv.Itoa(s.Port()) {
		t.Fatalf("ClientURL %q, Port %d", s.ClientURL(), s.Port())
	}
	nc, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	publishAndFetch(t, nc, "INPROC")

	tcp, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if !atLeast212(tcp.ConnectedServerVersion()) {
		t.Fatalf("server version %s", tcp.ConnectedServerVersion())
	}
	publishAndFetch(t, tcp, "TCP")
}

func TestDontListen(t *testing.T) {
	s := start(t, natsembed.Config{DontListen: true})
	if s.ClientURL() != "" || s.Port() != 0 {
		t.Fatalf("ClientURL %q, Port %d", s.ClientURL(), s.Port())
	}
	nc, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	publishAndFetch(t, nc, "NOLISTEN")
}

func TestPortInUseFailsFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	begin := time.Now()
	s, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Port: l.Addr().(*net.TCPAddr).Port, Logger: testenv.Logger(t)})
	if err == nil {
		s.Shutdown()
		t.Fatal("Start succeeded on a busy port")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("took %s to fail", d)
	}
	t.Logf("error: %v", err)
}

func TestRestartKeepsStoredMessages(t *testing.T) {
	dir := t.TempDir()
	s := start(t, natsembed.Config{StoreDir: dir, SyncAlways: true, MaxPayload: 2 << 20})
	nc, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep"}}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1536<<10) // above the 1 MiB default
	if _, err := js.Publish(ctx, "keep", big); err != nil {
		t.Fatalf("Publish 1.5 MiB with MaxPayload 2 MiB: %v", err)
	}
	nc.Close()
	s.Shutdown()
	s.Shutdown() // idempotent

	s2 := start(t, natsembed.Config{StoreDir: dir, MaxPayload: 2 << 20})
	nc2, err := s2.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	st, err := js2.Stream(ctx, "KEEP")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil || len(m.Data) != len(big) {
		t.Fatalf("GetMsg after restart: %v", err)
	}
}

func atLeast212(v string) bool {
	var major, minor int
	_, err := fmt.Sscanf(v, "%d.%d", &major, &minor)
	return err == nil && (major > 2 || major == 2 && minor >= 12)
}

// With Users the server requires credentials, over TCP and in process.
func TestUsersRequireCredentials(t *testing.T) {
	s := start(t, natsembed.Config{Port: -1, Users: map[string]string{"herald": "s3cret-password"}})
	if _, err := nats.Connect(s.ClientURL()); err == nil {
		t.Fatal("anonymous client connected")
	}
	if _, err := nats.Connect(s.ClientURL(), nats.UserInfo("herald", "wrong")); err == nil {
		t.Fatal("wrong password connected")
	}
	nc, err := s.Connect(nats.UserInfo("herald", "s3cret-password"))
	if err != nil {
		t.Fatalf("in process with the password: %v", err)
	}
	defer nc.Close()
	publishAndFetch(t, nc, "AUTHED")
	tcp, err := nats.Connect(s.ClientURL(), nats.UserInfo("herald", "s3cret-password"))
	if err != nil {
		t.Fatalf("TCP with the password: %v", err)
	}
	tcp.Close()
}

// A callout without users for its service cannot work: refused at start.
func TestCalloutNeedsUsers(t *testing.T) {
	_, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Port: -1, CalloutIssuer: "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"})
	if err == nil {
		t.Fatal("started a callout without users")
	}
}
