package service_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/service"
)

// The welcome text shows the admin token only when Herald generated it and
// stderr is a terminal; otherwise it says where the token is, and a log file
// never holds it.
func TestWelcomeShowsAdminTokenOnlyAtATerminal(t *testing.T) {
	// The all-in-one as it starts: a token generated into the data dir.
	data := t.TempDir()
	info := runInfo(t, service.Config{
		Roles:    service.Roles{API: true, Router: true, Sender: true},
		Embedded: true, DataDir: data, NATSListen: "127.0.0.1:0", RedisURL: "redis://127.0.0.1:1", RedisOptional: true,
		HTTPAddr: "127.0.0.1:0", LogLevel: "warn",
	})
	file := filepath.Join(data, "admin-token")
	stored, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !info.AdminTokenGenerated || info.AdminTokenFile != file || strings.TrimSpace(string(stored)) != info.AdminToken || info.AdminToken == "" {
		t.Fatalf("info: generated %v, file %q (want %q), token matches the file: %v", info.AdminTokenGenerated, info.AdminTokenFile, file,
			strings.TrimSpace(string(stored)) == info.AdminToken)
	}

	// stderr redirected to a log file: the token stays out, its file is named.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "herald.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	service.PrintWelcome(logFile, info)
	logged, _ := os.ReadFile(logFile.Name())
	if strings.Contains(string(logged), info.AdminToken) {
		t.Errorf("the welcome text wrote the admin token to a log file:\n%s", logged)
	}
	if !strings.Contains(string(logged), "kept in "+file) || !strings.Contains(string(logged), "Bearer $(cat "+file+")") {
		t.Errorf("the welcome text in a log file does not say where the token is:\n%s", logged)
	}

	// At a terminal, the generated token is shown.
	if got := printAtTerminal(t, info); !strings.Contains(got, "admin token  "+info.AdminToken) || !strings.Contains(got, "Bearer "+info.AdminToken) {
		t.Errorf("at a terminal the welcome text does not show the generated token:\n%s", got)
	}

	// A token from HERALD_ADMIN_TOKEN is never printed, terminal or not.
	given := info
	given.AdminToken, given.AdminTokenGenerated, given.AdminTokenFile = "adm_given_by_the_operator_0123456789", false, ""
	var buf bytes.Buffer
	service.PrintWelcome(&buf, given)
	for where, out := range map[string]string{"a buffer": buf.String(), "a terminal": printAtTerminal(t, given)} {
		if strings.Contains(out, given.AdminToken) {
			t.Errorf("the welcome text on %s shows the token from HERALD_ADMIN_TOKEN:\n%s", where, out)
		}
		if !strings.Contains(out, "from HERALD_ADMIN_TOKEN") || !strings.Contains(out, "Bearer $HERALD_ADMIN_TOKEN") {
			t.Errorf("the welcome text on %s does not say the token is HERALD_ADMIN_TOKEN's:\n%s", where, out)
		}
	}
}

// The welcome text tells producers how to connect to NATS (a tenant's API
// key as the token), and where Herald's own NATS credentials are.
func TestWelcomeSaysHowProducersConnect(t *testing.T) {
	var buf bytes.Buffer
	service.PrintWelcome(&buf, service.Info{HTTPAddr: "127.0.0.1:8080", NATSURL: "nats://127.0.0.1:4333", NATSAuthFile: "/data/nats-auth.json"})
	out := buf.String()
	for _, want := range []string{
		"token = a tenant's API key",
		`nats.Connect("nats://127.0.0.1:4333", nats.Token("<api_key>"), nats.CustomInboxPrefix("_INBOX_<tenant id>"))`,
		"Herald's own NATS user: /data/nats-auth.json",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the welcome text lacks %q:\n%s", want, out)
		}
	}
}

// The welcome text's walk-through works as printed: its curl commands,
// run by curl against the all-in-one, create a tenant and an endpoint and
// send an event that reaches the receiver. (A body sent with curl -d is a
// form, which the API answers 415; the commands must send JSON.)
func TestWelcomeWalkThroughRuns(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		testenv.Unavailable(t, "curl is not installed: %v", err)
	}
	got := make(chan string, 4)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer rcv.Close()
	info := runInfo(t, service.Config{
		Roles:    service.Roles{API: true, Router: true, Sender: true},
		Embedded: true, DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", RedisURL: "redis://127.0.0.1:1", RedisOptional: true,
		HTTPAddr: "127.0.0.1:0", LogLevel: "warn", EgressAllowPrivate: true,
	})
	var buf bytes.Buffer
	service.PrintWelcome(&buf, info)
	var cmds []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "curl ") {
			cmds = append(cmds, l)
		}
	}
	if len(cmds) != 4 {
		t.Fatalf("the welcome text has %d curl commands, want 4:\n%s", len(cmds), buf.String())
	}
	run := func(cmd string) []byte {
		t.Helper()
		out, err := exec.Command("sh", "-c", strings.Replace(cmd, "curl ", curl+" --fail-with-body ", 1)).CombinedOutput()
		if err != nil {
			t.Fatalf("%s\n%v: %s", cmd, err, out)
		}
		return out
	}
	var tenant struct {
		APIKey string `json:"api_key"`
	}
	if out := run(cmds[0]); json.Unmarshal(out, &tenant) != nil || tenant.APIKey == "" {
		t.Fatalf("%s answered %s", cmds[0], out)
	}
	var last []byte
	for _, cmd := range cmds[1:] {
		cmd = strings.ReplaceAll(cmd, "<api_key>", tenant.APIKey)
		last = run(strings.ReplaceAll(cmd, "http://127.0.0.1:9000/hook", rcv.URL+"/hook"))
	}
	var portal struct {
		URL string `json:"url"`
	}
	if json.Unmarshal(last, &portal) != nil || !strings.Contains(portal.URL, "/portal?session=hps_") {
		t.Fatalf("%s answered %s, not a portal link", cmds[3], last)
	}
	select {
	case body := <-got:
		if !strings.Contains(body, `"type":"post.published"`) || !strings.Contains(body, `"title":"Hello"`) {
			t.Fatalf("the receiver got %s", body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the walk-through's event did not reach the receiver")
	}
}
