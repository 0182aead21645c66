package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

type fixture struct {
	t      *testing.T
	ctx    context.Context
	js     jetstream.JetStream
	st     *store.Store
	url    string
	tenant string
	key    string
	// config is the profile file the commands use (HERALD_CLI_CONFIG),
	// unless a test's environment names another.
	config string
	// hook is a receiver that answers 200, or 500 while failing is set.
	hook    *httptest.Server
	failing atomic.Bool
	got     atomic.Int64
}

// newFixture runs the all-in-one (service.Run: embedded NATS, the real
// Redis, the API on a loopback port) with one tenant. With pipeline, its
// router and sender deliver what is sent (to the fixture's receiver,
// retrying every 50 ms); without, it runs no sender, so jobs stay queued
// and the dead letters a test makes are all there are.
func newFixture(t *testing.T, pipeline bool) *fixture {
	t.Helper()
	ctx := t.Context()
	redisURL, prefix := testenv.Redis(t)
	dataDir := t.TempDir()
	cfg := service.Config{
		Roles:    service.Roles{API: true, Router: true, Sender: pipeline},
		Embedded: true, DataDir: dataDir, NATSListen: "127.0.0.1:0",
		RedisURL: redisURL, RedisPrefix: prefix,
		HTTPAddr: "127.0.0.1:0", LogLevel: "warn",
		Schedule: retry.Schedule{50 * time.Millisecond, 50 * time.Millisecond},
		// The fixture's receiver is on loopback, as a developer's is.
		EgressAllowPrivate: true,
	}
	info, _ := testenv.Serve(t, func(ctx context.Context, ready func(service.Info)) error {
		return service.Run(ctx, cfg, testenv.Logger(t), ready)
	})
	if !info.Redis {
		t.Fatalf("the all-in-one runs without Redis at %s", redisURL)
	}
	own, err := service.ReadEmbeddedNATSAuth(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	js := testenv.ConnectJetStream(t, info.NATSURL, own.Options()...)
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tn, key, err := st.CreateTenant(ctx, "cli")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: ctx, js: js, st: st, url: "http://" + info.HTTPAddr, tenant: tn.ID, key: key,
		config: filepath.Join(t.TempDir(), "herald", "config.json")}
	f.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.got.Add(1)
		if f.failing.Load() {
			http.Error(w, "down for maintenance", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(f.hook.Close)
	return f
}

func (f *fixture) endpoint() string {
	f.t.Helper()
	ep, err := f.st.CreateEndpoint(f.ctx, f.tenant, store.Endpoint{Name: "e", URL: "http://127.0.0.1:9/", Events: []string{"*"}, Enabled: true})
	if err != nil {
		f.t.Fatal(err)
	}
	return ep.ID
}

func (f *fixture) dead(ep, eventID, typ string, at time.Time) uint64 {
	f.t.Helper()
	job := &heraldv1.DeliveryJob{Id: event.JobID(f.tenant, eventID, ep), TenantId: f.tenant, EndpointId: ep,
		Event: &heraldv1.Event{Id: eventID, TenantId: f.tenant, Type: typ, Data: []byte(`{}`)}}
	b, _ := proto.Marshal(&heraldv1.DeadLetter{Job: job, Reason: "attempt budget of 5 used", DeadAtUnixMs: at.UnixMilli(),
		Attempts: []*heraldv1.Attempt{{Number: 5, StatusCode: 500, ErrorClass: "server_error"}}})
	ack, err := f.js.Publish(f.ctx, bus.DLQSubject(f.tenant, ep), b)
	if err != nil {
		f.t.Fatal(err)
	}
	return ack.Sequence
}

// run runs a command line with the environment env (HERALD_CLI_CONFIG
// defaults to the fixture's profile file). Nothing is on stdin.
func (f *fixture) run(env map[string]string, args ...string) (code int, stdout, stderr string) {
	f.t.Helper()
	return f.runIn(env, "", args...)
}

// runIn is run with stdin.
func (f *fixture) runIn(env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	f.t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "HERALD_CLI_CONFIG" {
			return f.config
		}
		return ""
	}
	code = Run(ctx, args, Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errb}, getenv)
	return code, out.String(), errb.String()
}

// conn is the flags that point a command at the fixture's API.
func (f *fixture) conn() []string { return []string{"--api-url", f.url, "--api-key", f.key} }

// ok runs a command that must succeed, and returns its output.
func (f *fixture) ok(args ...string) string {
	f.t.Helper()
	code, out, errs := f.run(nil, append(args, f.conn()...)...)
	if code != 0 {
		f.t.Fatalf("%v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

// okJSON runs a command that must succeed with --output json, and decodes
// what it printed into v.
func (f *fixture) okJSON(v any, args ...string) {
	f.t.Helper()
	out := f.ok(append(args, "--output", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		f.t.Fatalf("%v printed %q: %v", args, out, err)
	}
}

// fits fails the test when a line of out is wider than a table may be.
func fits(t *testing.T, out string) {
	t.Helper()
	for l := range strings.SplitSeq(out, "\n") {
		if n := utf8.RuneCountInString(l); n > tableWidth {
			t.Errorf("a line of %d columns:\n%s", n, l)
		}
	}
}

func TestListAndReplayAgainstTheAPI(t *testing.T) {
	f := newFixture(t, false)
	ep1, ep2 := f.endpoint(), f.endpoint()
	old := time.Now().Add(-50 * time.Second).Truncate(time.Millisecond)
	recent := time.Now().Add(-2 * time.Second).Truncate(time.Millisecond)
	s1 := f.dead(ep1, "evt-1", "post.published", old)
	s2 := f.dead(ep1, "evt-2", "post.deleted", recent)
	s3 := f.dead(ep2, "evt-3", "post.published", recent)
	conn := []string{"--api", f.url, "--key", f.key} // the old spellings still work

	// A table, oldest first.
	code, out, errs := f.run(nil, append([]string{"dlq", "list"}, conn...)...)
	if code != 0 {
		t.Fatalf("list: %d %s", code, errs)
	}
	fits(t, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], fmt.Sprint(s1)) ||
		!strings.Contains(lines[1], "evt-1") || !strings.Contains(lines[1], ep1) || !strings.Contains(lines[3], "evt-3") {
		t.Fatalf("list table:\n%s", out)
	}

	// JSON, filtered, the key from the environment; --all follows cursors.
	code, out, errs = f.run(map[string]string{"HERALD_API_KEY": f.key, "HERALD_API_URL": f.url},
		"dlq", "list", "--json", "--limit", "1", "--all", "--endpoint", ep1)
	if code != 0 {
		t.Fatalf("list --json: %d %s", code, errs)
	}
	var page dlq.Page
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("list --json printed %q: %v", out, err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != s1 || page.Data[1].ID != s2 || page.NextCursor != nil {
		t.Fatalf("list --json --all --endpoint: %+v", page)
	}
	code, out, _ = f.run(nil, append([]string{"dlq", "list", "-o", "json", "--limit", "1", "--event-type", "post.*"}, conn...)...)
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Data) != 1 || page.NextCursor == nil {
		t.Fatalf("one page of one: %d %+v", code, page)
	}
	code, out, _ = f.run(nil, append([]string{"dlq", "list", "--json", "--since", "10s"}, conn...)...)
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Data) != 2 || page.Data[0].ID != s2 {
		t.Fatalf("--since 10s: %d %+v", code, page)
	}

	// Replay what died on ep1 in the last 10 s, and wait for it.
	code, out, errs = f.run(nil, append([]string{"dlq", "replay", "--endpoint", ep1, "--since", "10s", "--rate", "100", "--wait", "--output", "json"}, f.conn()...)...)
	if code != 0 {
		t.Fatalf("replay: %d %s %s", code, out, errs)
	}
	var r dlq.Replay
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("replay printed %q: %v", out, err)
	}
	if r.State != dlq.StateDone || r.Total != 1 || r.Replayed != 1 || r.Rate != 100 || r.Filter == nil || r.Filter.EndpointID != ep1 {
		t.Fatalf("replay %+v", r)
	}
	code, out, _ = f.run(nil, append([]string{"dlq", "list", "--json"}, conn...)...)
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Data) != 2 || page.Data[0].ID != s1 || page.Data[1].ID != s3 {
		t.Fatalf("left after the replay: %+v", page)
	}

	// Status, as a table, flags after the id.
	code, out, errs = f.run(nil, append([]string{"dlq", "status", r.ID}, conn...)...)
	if code != 0 || !strings.Contains(out, "done") || !strings.Contains(out, "1/1 replayed") || !strings.Contains(out, "endpoint "+ep1) {
		t.Fatalf("status: %d\n%s%s", code, out, errs)
	}
	fits(t, out)
	var st dlq.Replay
	f.okJSON(&st, "dlq", "status", r.ID)
	if st.ID != r.ID || st.State != dlq.StateDone {
		t.Fatalf("status --output json: %+v", st)
	}

	// By id, without waiting: the replay id is printed.
	code, out, errs = f.run(nil, append([]string{"dlq", "replay", "--id", fmt.Sprintf("%d,%d", s1, s3)}, conn...)...)
	if code != 0 || !strings.Contains(out, "rpl_") || !strings.Contains(out, "2 dead letters by id") {
		t.Fatalf("replay --id: %d %s %s", code, out, errs)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		code, out, _ := f.run(nil, append([]string{"dlq", "list", "--json"}, conn...)...)
		var p dlq.Page
		return code == 0 && json.Unmarshal([]byte(out), &p) == nil && len(p.Data) == 0
	}, "the replay by id did not empty the DLQ")
}

func TestErrorsAndUsage(t *testing.T) {
	f := newFixture(t, false)
	conn := []string{"--api", f.url, "--key", f.key}
	for _, c := range []struct {
		args []string
		env  map[string]string
		code int
		msg  string
	}{
		{[]string{"dlq"}, nil, 2, "say which command"},
		{[]string{"dlq", "frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{append([]string{"dlq", "list", "--frob"}, conn...), nil, 2, "unknown flag -frob"},
		{append([]string{"dlq", "list", "--output", "yaml"}, conn...), nil, 2, `--output "yaml": want table or json`},
		{append([]string{"dlq", "list", "--cursor", "nope"}, conn...), nil, 2, "--cursor"},
		{[]string{"dlq", "list", "--api", f.url}, nil, 2, "no API key"},
		{[]string{"dlq", "list", "--api", f.url, "--key", "hk_wrong"}, nil, 1, "401"},
		{append([]string{"dlq", "list", "--since", "yesterday"}, conn...), nil, 2, "RFC 3339"},
		{append([]string{"dlq", "replay"}, conn...), nil, 2, "say what to replay"},
		{append([]string{"dlq", "replay", "--id", "999"}, conn...), nil, 1, "404"},
		{append([]string{"dlq", "replay", "--endpoint", "ep_nope"}, conn...), nil, 1, "endpoint ep_nope not found"},
		{append([]string{"dlq", "status", "rpl_nope"}, conn...), nil, 1, "404"},
		{append([]string{"dlq", "status"}, conn...), nil, 2, "missing REPLAY_ID"},
		{append([]string{"dlq", "replay", "--all", "--wait"}, conn...), nil, 0, "0/0 replayed"},
	} {
		code, out, errs := f.run(c.env, c.args...)
		if code != c.code || !strings.Contains(out+errs, c.msg) {
			t.Errorf("%v: exit %d, output %q %q; want exit %d mentioning %q", c.args, code, out, errs, c.code, c.msg)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 22, 21, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-20T10:00:00Z":      time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
		"2026-11-20T10:00:00+01:00": time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC),
		"24h":                       now.Add(-24 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-5m", "2026-11-20"} {
		if _, err := parseWhen(in, now); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
