package cli

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/version"
)

// offline runs a herald command line that must not reach an API or start
// a service.
func offline(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	config := filepath.Join(t.TempDir(), "config.json")
	c := &cmd{ctx: context.Background(), std: Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, now: time.Now,
		env: func(k string) string {
			if k == "HERALD_CLI_CONFIG" {
				return config
			}
			return ""
		},
		runService: func(role string, def service.Config) int {
			t.Errorf("%v started %s", args, role)
			return 1
		}}
	code = c.main(args)
	return code, out.String(), errb.String()
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"-help"}} {
		code, out, errs := offline(t, args...)
		if code != 0 || errs != "" || !strings.Contains(out, "Usage: herald <command>") {
			t.Errorf("%v: exit %d %q %q", args, code, out, errs)
		}
		for _, want := range []string{"endpoints", "events", "attempts", "dlq", "login", "--api-url", "--output"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: the usage names no %s", args, want)
			}
		}
		fits(t, out)
	}
	for _, args := range [][]string{{"--version"}, {"version"}, {"-version"}} {
		code, out, errs := offline(t, args...)
		if code != 0 || errs != "" || out != "herald "+version.Version+"\n" {
			t.Errorf("%v: exit %d %q %q", args, code, out, errs)
		}
	}
}

// Every command and group answers --help with its usage on stdout, within
// 80 columns, and starts nothing.
func TestEveryCommandHelps(t *testing.T) {
	for _, k := range commands {
		name := strings.Fields(k.name)
		for _, args := range [][]string{append(name, "--help"), append(name, "-h"), append([]string{"help"}, name...)} {
			code, out, errs := offline(t, args...)
			if code != 0 || errs != "" || !strings.Contains(out, "Usage: herald "+k.name) {
				t.Errorf("%v: exit %d %q %q", args, code, out, errs)
			}
			fits(t, out)
		}
	}
	for _, g := range groups {
		for _, args := range [][]string{{g.name, "--help"}, {g.name, "help"}, {"help", g.name}} {
			code, out, errs := offline(t, args...)
			if code != 0 || errs != "" || !strings.Contains(out, "herald "+g.name+" ") {
				t.Errorf("%v: exit %d %q %q", args, code, out, errs)
			}
			fits(t, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"frob"}, `herald: unknown command "frob"`},
		{[]string{"--frob"}, "herald: unknown flag -frob"},
		{[]string{"--profile", "x"}, "no command after the flags"},
		{[]string{"help", "frob"}, `unknown command "frob"`},
		{[]string{"endpoints", "frob"}, `herald endpoints: unknown command "frob"`},
		{[]string{"endpoints", "list", "--frob"}, "herald endpoints list: unknown flag -frob"},
		{[]string{"endpoints", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"endpoints", "list", "--api-key", "k", "-o", "yaml"}, `--output "yaml"`},
		{[]string{"endpoints", "list"}, "no API key"},
		{[]string{"run", "--frob"}, "herald run: unknown flag -frob"},
		{[]string{"run", "--api-url", "x"}, "unknown flag -api-url"},
		{[]string{"config", "extra"}, `unexpected argument "extra"`},
		{[]string{"nats-callout-key", "x"}, `unexpected argument "x"`},
	} {
		code, out, errs := offline(t, c.args...)
		if code != 2 || out != "" || !strings.Contains(errs, c.msg) || !strings.Contains(errs, "--help' for usage") {
			t.Errorf("%v: exit %d %q %q; want 2, stderr naming %q", c.args, code, out, errs, c.msg)
		}
	}
}

func TestRunStartsTheAllInOne(t *testing.T) {
	for _, args := range [][]string{nil, {"run"}} {
		var started string
		c := &cmd{std: Stdio{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}, env: func(string) string { return "" },
			runService: func(role string, def service.Config) int {
				started = role
				if !def.Embedded || !def.Roles.API || !def.Roles.Router || !def.Roles.Sender {
					t.Errorf("%v: started %+v", args, def)
				}
				return 7
			}}
		if code := c.main(args); code != 7 || started != "herald" {
			t.Errorf("%v: exit %d, started %q; want the service's status, 7", args, code, started)
		}
	}
}

func TestLocalCommands(t *testing.T) {
	code, out, errs := offline(t, "nats-callout-key")
	if code != 0 || !strings.Contains(out, "HERALD_NATS_CALLOUT_SEED=S") || !strings.Contains(out, "HERALD_NATS_CALLOUT_ISSUER=A") {
		t.Fatalf("nats-callout-key: %d %q %q", code, out, errs)
	}
	t.Setenv("HERALD_SENDER_WORKERS", "32")
	code, out, errs = offline(t, "config")
	if code != 0 || !strings.Contains(out, "HERALD_SENDER_WORKERS") || !strings.Contains(out, "32") {
		t.Fatalf("config: %d %q %q", code, out, errs)
	}
	t.Setenv("HERALD_SENDER_WORKERS", "0")
	code, out, errs = offline(t, "config")
	if code != 2 || !strings.Contains(errs, "HERALD_SENDER_WORKERS") || strings.Contains(errs, "for usage") {
		t.Fatalf("config, invalid: %d %q %q", code, out, errs)
	}
}

// The service binaries' mains are one call to Service: this is its test.
func TestServiceCommandLine(t *testing.T) {
	sb := ServiceBinaries[2]
	def := sb.Defaults
	if sb.Name != "herald-sender" || !def.Roles.Sender || def.HTTPAddr != "127.0.0.1:8082" {
		t.Fatalf("ServiceBinaries[2] is %+v, want herald-sender", sb)
	}
	run := func(args ...string) (code int, started bool, stdout, stderr string) {
		var out, errb bytes.Buffer
		code = runServiceCLI(args, Stdio{Out: &out, Err: &errb}, sb, func(role string, got service.Config) int {
			if role != "sender" || got.HTTPAddr != def.HTTPAddr {
				t.Errorf("started %s with %+v", role, got)
			}
			started = true
			return 0
		})
		return code, started, out.String(), errb.String()
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, started, out, errs := run(args...)
		if code != 0 || started || errs != "" || !strings.Contains(out, "Usage: herald-sender") || !strings.Contains(out, "sender role") {
			t.Errorf("%v: exit %d started %v %q %q", args, code, started, out, errs)
		}
		fits(t, out)
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, started, out, _ := run(args...)
		if code != 0 || started || out != "herald-sender "+version.Version+"\n" {
			t.Errorf("%v: exit %d started %v %q", args, code, started, out)
		}
	}
	for _, args := range [][]string{{"--frob"}, {"frob"}, {"run", "extra"}, {"config", "--frob"}, {"healthcheck", "--frob"}, {"healthcheck", "--probe", "frob"}} {
		code, started, out, errs := run(args...)
		if code != 2 || started || out != "" || !strings.Contains(errs, "herald-sender") || !strings.Contains(errs, strings.TrimLeft(args[len(args)-1], "-")) {
			t.Errorf("%v: exit %d started %v %q %q", args, code, started, out, errs)
		}
	}
	if code, started, _, _ := run(); code != 0 || !started {
		t.Errorf("no arguments: exit %d, started %v", code, started)
	}
	if code, started, _, _ := run("run"); code != 0 || !started {
		t.Errorf("run: exit %d, started %v", code, started)
	}
	if code, started, out, _ := run("config"); code != 0 || started || !strings.Contains(out, "HERALD_SENDER_WORKERS") {
		t.Errorf("config: exit %d, started %v %q", code, started, out)
	}
}

// healthcheck asks the process at HERALD_HTTP_ADDR (a wildcard host means
// this host) for its readiness: exit 0 on 200, 1 on anything else or no
// answer, as Docker's HEALTHCHECK wants; --probe picks another probe.
func TestHealthcheck(t *testing.T) {
	ready := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/livez", r.URL.Path == "/readyz" && ready:
			w.WriteHeader(200)
		default:
			w.WriteHeader(503)
		}
	}))
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	t.Setenv("HERALD_HTTP_ADDR", "0.0.0.0:"+port)
	check := func(want int, args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := runServiceCLI(append([]string{"healthcheck"}, args...), Stdio{Out: &out, Err: &errb}, ServiceBinaries[0],
			func(string, service.Config) int { t.Fatal("healthcheck started the service"); return 0 })
		if code != want {
			t.Fatalf("healthcheck %v: exit %d, want %d; %q %q", args, code, want, out.String(), errb.String())
		}
	}
	check(1)
	check(0, "--probe", "live")
	check(1, "--probe", "startup")
	ready = true
	check(0)
	srv.Close()
	check(1, "--timeout", "1s")
}

func TestTableFits(t *testing.T) {
	var b bytes.Buffer
	long := strings.Repeat("x", 200)
	tb := table{head: []string{"ID", "WHAT", "WHY"}, cut: []int{1, 2}}
	tb.add("ep_01JD3K7Q9X2M4N6P8R0T2V4W6Y", "a\tshort\nvalue", long)
	tb.add("ep_01JD3K7Q9X2M4N6P8R0T2V4W6Z", long, "ünïcödé "+long)
	if err := tb.write(&b); err != nil {
		t.Fatal(err)
	}
	fits(t, b.String())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "ep_01JD3K7Q9X2M4N6P8R0T2V4W6Y  a short value") ||
		!strings.HasSuffix(lines[1], "x…") || !strings.Contains(lines[2], "ünïcödé") {
		t.Fatalf("table:\n%s", b.String())
	}
	// Ids are never cut, even when they alone are too wide.
	b.Reset()
	tb = table{head: []string{"ID"}, cut: nil}
	tb.add(long)
	_ = tb.write(&b)
	if !strings.Contains(b.String(), long) {
		t.Fatal("an id was cut")
	}
}

func TestAgeOf(t *testing.T) {
	now := time.Date(2026, 11, 22, 21, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		0: "0s", 45 * time.Second: "45s", 12 * time.Minute: "12m", 5 * time.Hour: "5h", 47 * time.Hour: "47h", 72 * time.Hour: "3d",
		-time.Minute: "0s",
	} {
		if got := ageOf(now.Add(-d), now); got != want {
			t.Errorf("ageOf(%v ago) = %q, want %q", d, got, want)
		}
	}
	if ageOf(time.Time{}, now) != "-" {
		t.Error("no time is not -")
	}
}
