package natsembed

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// A server line written for a terminal becomes a message; a line of
// decoration becomes nothing.
func TestRecord(t *testing.T) {
	for line, want := range map[string]string{
		"Starting nats-server":                               "Starting nats-server",
		"  Version:  2.15.2":                                 "Version: 2.15.2",
		"  Max Memory:      17.66 GB":                        "Max Memory: 17.66 GB",
		`  Store Directory: "/data/nats/jetstream"`:          `Store Directory: "/data/nats/jetstream"`,
		"---------------- JETSTREAM ----------------":        "JETSTREAM",
		"Listening for client connections on 127.0.0.1:4222": "Listening for client connections on 127.0.0.1:4222",
		"-------------------------------------------":        "",
		"":    "",
		"   ": "",
		` \__/|___| |_| |___/ |_| |_|_\___/_/ \_\_|  |_|`: "",
	} {
		msg, ok := record(line)
		if msg != want || ok != (want != "") {
			t.Errorf("record(%q) = %q, %v; want %q", line, msg, ok, want)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Every line the server logs from start to shutdown is an ordinary record
// with a message: no banner, no empty records.
func TestServerLinesAreRecords(t *testing.T) {
	var logs syncBuf
	s, err := Start(Config{StoreDir: t.TempDir(), DontListen: true, Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Level, Message string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		if rec.Message == "" || strings.TrimSpace(rec.Message) != rec.Message || strings.Contains(rec.Message, "|_") {
			t.Errorf("a record without an ordinary message: %s", line)
		}
		msgs = append(msgs, rec.Message)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"Starting nats-server", "Starting JetStream", "JETSTREAM", "Max Storage: ", "Server is ready"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q among the server's records:\n%s", want, all)
		}
	}
}

// At info, the server's start-up summary is not logged (it is at debug):
// what a person sees first is Herald's own records and welcome text. What
// the server says once it is ready, shutting down included, is.
func TestStartupSummaryIsDebug(t *testing.T) {
	var logs syncBuf
	s, err := Start(Config{StoreDir: t.TempDir(), DontListen: true, Logger: zerolog.New(&logs).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	out := logs.String()
	for _, summary := range []string{"Starting nats-server", "Version: ", "Max Storage: ", "Server is ready"} {
		if strings.Contains(out, summary) {
			t.Errorf("%q logged at info:\n%s", summary, out)
		}
	}
	if !strings.Contains(out, "Initiating Shutdown") {
		t.Errorf("the server's notices after start-up are not logged at info:\n%s", out)
	}
}
