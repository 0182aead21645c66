package service

import (
	"bytes"
	"encoding/base64"
	"net"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/natsauth"
	"github.com/heraldhq/herald/pkg/retry"
)

// clearEnv unsets every setting for the test (set to "" is unset).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, s := range settings {
		t.Setenv(s.env, "")
	}
}

// The table itself: one row per variable and per field, every default
// parses, every field type has a parser and a printer.
func TestSettings(t *testing.T) {
	var c Config
	envs := map[string]bool{}
	fields := map[any]string{}
	for _, s := range settings {
		if envs[s.env] {
			t.Errorf("%s: listed twice", s.env)
		}
		envs[s.env] = true
		p := s.field(&c)
		if other, ok := fields[p]; ok {
			t.Errorf("%s and %s set the same field", s.env, other)
		}
		fields[p] = s.env
		if s.doc == "" {
			t.Errorf("%s: no doc", s.env)
		}
		_ = s.format(&c) // panics for a type without a printer
		if s.def != "" {
			var d Config
			if err := s.parse(&d, s.def); err != nil {
				t.Errorf("default: %v", err)
			} else if got := s.format(&d); got != s.def {
				t.Errorf("%s: default %q prints as %q", s.env, s.def, got)
			}
		}
	}
}

// The defaults are today's: FromEnv with nothing set gives the values the
// hand-written defaults gave, and a binary's own defaults win.
func TestConfigDefaults(t *testing.T) {
	clearEnv(t)
	c, err := FromEnv(Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		NATSURL: "nats://127.0.0.1:4222", RedisURL: "redis://127.0.0.1:6379", RedisPrefix: "herald:",
		DataDir: "./data", NATSListen: "127.0.0.1:4333", Schedule: retry.Default,
		SenderWorkers: 256, RouterWorkers: 64, AckWait: 30 * time.Second, ScheduleThreshold: time.Minute,
		RetryAfterMax: time.Hour, SenderMaxAckPending: 20000, DisableAfter: 5 * 24 * time.Hour,
		EndpointConcurrency: 10, EndpointHandoffWait: 2 * time.Second, EndpointHandoffJobs: 4096,
		SenderHandoffJobs: 4096, SenderHandoffBytes: 64 << 20,
		BreakerFailures: 5, BreakerFailingFor: 10 * time.Second, BreakerCoolDown: 30 * time.Second,
		Streams: bus.Config{Replicas: 1, DuplicateWindow: 2 * time.Minute, EventsMaxAge: 7 * 24 * time.Hour,
			AttemptsMaxAge: 30 * 24 * time.Hour, DLQMaxAge: 30 * 24 * time.Hour},
		MaxEventBytes: 5 << 20, MaxInflightEventBytes: 64 << 20, InlinePayloadBytes: 64 << 10, PayloadCacheBytes: 64 << 20,
		TenantEventsPerSecond: 1000, TenantTestSendsPerSecond: 10,
		LogLevel: "info", LogFormat: "auto",
		Tracing: Tracing{Exporter: "none", Protocol: "http/protobuf", Sampler: "parentbased_always_on"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults\n got %+v\nwant %+v", c, want)
	}

	// A binary's defaults win over the table's; the environment over both.
	c, err = FromEnv(Config{HTTPAddr: "127.0.0.1:8082", SenderWorkers: 7, TenantEventsPerSecond: 5, Embedded: true})
	if err != nil || c.HTTPAddr != "127.0.0.1:8082" || c.SenderWorkers != 7 || c.TenantEventsPerSecond != 5 || !c.Embedded {
		t.Errorf("a binary's defaults lost: %+v, %v", c, err)
	}
	t.Setenv("HERALD_SENDER_WORKERS", "9")
	t.Setenv("HERALD_EMBEDDED_NATS", "false")
	if c, err = FromEnv(Config{SenderWorkers: 7, Embedded: true}); err != nil || c.SenderWorkers != 9 || c.Embedded {
		t.Errorf("the environment lost: workers %d, embedded %v, %v", c.SenderWorkers, c.Embedded, err)
	}

	// Zero means "off" for the tenant rates in code; the rest take defaults.
	if d := (Config{}).withDefaults(); d.TenantEventsPerSecond != 0 || d.TenantTestSendsPerSecond != 0 || d.SenderWorkers != 256 {
		t.Errorf("withDefaults: rates %d, %d, workers %d; want 0 (off), 0, 256", d.TenantEventsPerSecond, d.TenantTestSendsPerSecond, d.SenderWorkers)
	}
}

// 0 is a choice where it means something, and refused, naming the
// variable, where it does not.
func TestConfigZero(t *testing.T) {
	for env, ok := range map[string]bool{
		"HERALD_TENANT_EVENTS_PER_SECOND":     true,
		"HERALD_TENANT_EVENTS_BURST":          true,
		"HERALD_TENANT_TEST_SENDS_PER_SECOND": true,
		"HERALD_TENANT_TEST_SENDS_BURST":      true,
		"HERALD_SENDER_WORKERS":               false,
		"HERALD_ROUTER_WORKERS":               false,
		"HERALD_STREAM_REPLICAS":              false,
		"HERALD_ENDPOINT_CONCURRENCY":         false,
		"HERALD_SENDER_MAX_ACK_PENDING":       false,
		"HERALD_INLINE_PAYLOAD_BYTES":         false,
		"HERALD_SENDER_HANDOFF_BYTES":         false,
		"HERALD_MAX_EVENT_BYTES":              false,
		"HERALD_ACK_WAIT":                     false,
	} {
		t.Run(env, func(t *testing.T) {
			clearEnv(t)
			v := "0"
			if strings.HasSuffix(env, "_WAIT") {
				v = "0s"
			}
			t.Setenv(env, v)
			c, err := FromEnv(Config{})
			switch {
			case ok && err != nil:
				t.Errorf("%s=%s refused: %v", env, v, err)
			case ok:
				for _, s := range settings {
					if s.env == env && !s.isZero(&c) {
						t.Errorf("%s=%s: read as %s", env, v, s.format(&c))
					}
				}
			case err == nil || !strings.Contains(err.Error(), env):
				t.Errorf("%s=%s: %v, want an error naming it", env, v, err)
			}
		})
	}
}

// Each contradiction is refused with a message naming its variables; its
// neighbour on the right side of the line is not.
func TestConfigValidate(t *testing.T) {
	seed, err := natsauth.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 32))
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // in the error; none: valid
	}{
		{"defaults", nil, nil},
		{"handoff wait as long as AckWait", map[string]string{"HERALD_ENDPOINT_HANDOFF_WAIT": "2s", "HERALD_ACK_WAIT": "2s"},
			[]string{"HERALD_ENDPOINT_HANDOFF_WAIT=2s", "HERALD_ACK_WAIT (2s)"}},
		{"handoff wait shorter than AckWait", map[string]string{"HERALD_ENDPOINT_HANDOFF_WAIT": "2s", "HERALD_ACK_WAIT": "3s"}, nil},
		{"AckWait as long as the duplicate window", map[string]string{"HERALD_ACK_WAIT": "2m"},
			[]string{"HERALD_ACK_WAIT=2m", "HERALD_DUPLICATE_WINDOW (2m)"}},
		{"AckWait beyond a shorter window", map[string]string{"HERALD_DUPLICATE_WINDOW": "20s"},
			[]string{"HERALD_ACK_WAIT=30s", "HERALD_DUPLICATE_WINDOW (20s)"}},
		{"AckWait within a longer window", map[string]string{"HERALD_ACK_WAIT": "5m", "HERALD_DUPLICATE_WINDOW": "10m"}, nil},
		{"duplicate window beyond the events' retention", map[string]string{"HERALD_DUPLICATE_WINDOW": "2h", "HERALD_EVENTS_RETENTION": "1h"},
			[]string{"HERALD_DUPLICATE_WINDOW=2h", "HERALD_EVENTS_RETENTION (1h)"}},
		{"duplicate window beyond the dead letters' retention", map[string]string{"HERALD_DUPLICATE_WINDOW": "2h", "HERALD_DLQ_RETENTION": "90m"},
			[]string{"HERALD_DUPLICATE_WINDOW=2h", "HERALD_DLQ_RETENTION (1h30m)"}},
		{"duplicate window as long as the retention", map[string]string{"HERALD_DUPLICATE_WINDOW": "1h", "HERALD_EVENTS_RETENTION": "1h"}, nil},
		{"two NATS credentials", map[string]string{"HERALD_NATS_USER": "herald", "HERALD_NATS_TOKEN": "t"},
			[]string{"HERALD_NATS_USER", "HERALD_NATS_TOKEN"}},
		{"NATS password without user", map[string]string{"HERALD_NATS_PASSWORD": "pw"}, []string{"HERALD_NATS_PASSWORD is set without HERALD_NATS_USER"}},
		{"TLS certificate without key", map[string]string{"HERALD_NATS_TLS_CERT": "c.pem"}, []string{"HERALD_NATS_TLS_CERT and HERALD_NATS_TLS_KEY"}},
		{"system user without password", map[string]string{"HERALD_NATS_SYSTEM_USER": "sys"}, []string{"HERALD_NATS_SYSTEM_USER and HERALD_NATS_SYSTEM_PASSWORD"}},
		{"callout seed", map[string]string{"HERALD_NATS_CALLOUT_SEED": seed}, nil},
		{"bad callout seed", map[string]string{"HERALD_NATS_CALLOUT_SEED": "SAnope"}, []string{"HERALD_NATS_CALLOUT_SEED"}},
		{"encryption keys", map[string]string{"HERALD_ENCRYPTION_KEY": key, "HERALD_ENCRYPTION_OLD_KEYS": key}, nil},
		{"bad encryption keys", map[string]string{"HERALD_ENCRYPTION_KEY": "c2hvcnQ=", "HERALD_ENCRYPTION_OLD_KEYS": key + ",nope"},
			[]string{"HERALD_ENCRYPTION_KEY", "HERALD_ENCRYPTION_OLD_KEYS, key 2"}},
		{"egress proxy", map[string]string{"HERALD_EGRESS_PROXY": "socks5://proxy:1080"}, []string{"HERALD_EGRESS_PROXY"}},
		{"NATS sync", map[string]string{"HERALD_NATS_SYNC": "often"}, []string{"HERALD_NATS_SYNC"}},
		{"log level and format", map[string]string{"HERALD_LOG_LEVEL": "DEBUG", "HERALD_LOG_FORMAT": "console"}, nil},
		{"unknown log level", map[string]string{"HERALD_LOG_LEVEL": "verbose"}, []string{`HERALD_LOG_LEVEL="verbose"`}},
		{"zerolog's own level", map[string]string{"HERALD_LOG_LEVEL": "disabled"}, []string{`HERALD_LOG_LEVEL="disabled"`}},
		{"unknown log format", map[string]string{"HERALD_LOG_FORMAT": "text"}, []string{`HERALD_LOG_FORMAT="text"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := FromEnv(Config{})
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error naming %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\nwant it to say %q", err, w)
				}
			}
		})
	}

	// A Config built in code is validated over its defaults.
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{}, ""},
		{Config{AckWait: 3 * time.Minute}, "HERALD_ACK_WAIT=3m"},
		{Config{SenderWorkers: -1}, "HERALD_SENDER_WORKERS=-1"},
		{Config{TenantEventsPerSecond: -1}, "HERALD_TENANT_EVENTS_PER_SECOND=-1"},
		{Config{LogLevel: "loud"}, "HERALD_LOG_LEVEL"},
	} {
		err := tc.c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.c, err, tc.want)
		}
	}
}

// `herald config` prints every setting with its value, default and source,
// and never a secret.
func TestPrintConfig(t *testing.T) {
	seed, err := natsauth.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("s"), 32))
	oldKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("o"), 32))
	// Every secret holds "s3cret" but the keys and the seed.
	secrets := map[string]string{
		"HERALD_ADMIN_TOKEN":          "adm-s3cret-token",
		"HERALD_ENCRYPTION_KEY":       key,
		"HERALD_ENCRYPTION_OLD_KEYS":  oldKey,
		"HERALD_NATS_CALLOUT_SEED":    seed,
		"HERALD_NATS_SYSTEM_PASSWORD": "sys-pw-s3cret",
	}
	// The NATS credentials exclude each other: one run each.
	for _, creds := range []map[string]string{
		{"HERALD_NATS_USER": "herald", "HERALD_NATS_PASSWORD": "nats-pw-s3cret"},
		{"HERALD_NATS_TOKEN": "nats-token-s3cret"},
	} {
		clearEnv(t)
		for k, v := range secrets {
			t.Setenv(k, v)
		}
		for k, v := range creds {
			t.Setenv(k, v)
		}
		t.Setenv("HERALD_NATS_SYSTEM_USER", "herald-system")
		t.Setenv("NATS_URL", "nats://u:url-pw-s3cret@nats-1:4222,nats://url-token-s3cret@nats-2:4222")
		t.Setenv("REDIS_URL", "redis://:redis-pw-s3cret@redis:6379/0")
		t.Setenv("HERALD_EGRESS_PROXY", "http://proxy:proxy-pw-s3cret@egress:3128")
		t.Setenv("HERALD_SENDER_WORKERS", "32")
		var out strings.Builder
		if err := PrintConfig(&out, Config{HTTPAddr: "127.0.0.1:8080", Embedded: true}); err != nil {
			t.Fatal(err)
		}
		o := out.String()
		for _, s := range settings {
			if !regexp.MustCompile(`(?m)^` + s.env + ` `).MatchString(o) {
				t.Errorf("%s not printed", s.env)
			}
		}
		for _, v := range []string{"s3cret", key, oldKey, seed} {
			if strings.Contains(o, v) {
				t.Errorf("a secret is printed: %q\n%s", v, o)
			}
		}
		for _, line := range []string{
			`HERALD_SENDER_WORKERS +32 +256 +env `,
			`HERALD_ROUTER_WORKERS +64 +64 +default `,
			`HERALD_HTTP_ADDR +127\.0\.0\.1:8080 +127\.0\.0\.1:8080 +default `,
			`HERALD_EMBEDDED_NATS +true +true +default `,
			`HERALD_ADMIN_TOKEN +set, masked +none +env `,
			`HERALD_ENCRYPTION_KEY +set, masked +none +env `,
			`REDIS_URL +redis://masked@redis:6379/0 +redis://127\.0\.0\.1:6379 +env `,
			`HERALD_EGRESS_PROXY +http://masked@egress:3128 +none +env `,
			`NATS_URL +nats://masked@nats-2:4222 `,
			`HERALD_TENANT_EVENTS_BURST +0 \(the rate\) +0 \(the rate\) +default `,
			`HERALD_RETRY_SCHEDULE +5s,5m,30m,2h,5h,10h,10h `,
		} {
			if !regexp.MustCompile(`(?m)^` + line).MatchString(o) {
				t.Errorf("no line %q in\n%s", line, o)
			}
		}
	}

	t.Run("invalid", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("HERALD_ADMIN_TOKEN", "adm-s3cret-token")
		t.Setenv("HERALD_ACK_WAIT", "5m")
		var out strings.Builder
		err := PrintConfig(&out, Config{})
		if err == nil || !strings.Contains(err.Error(), "HERALD_ACK_WAIT") {
			t.Errorf("a contradiction: %v, want an error naming HERALD_ACK_WAIT", err)
		}
		if strings.Contains(out.String(), "s3cret") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("a secret is printed: %v\n%s", err, out.String())
		}
		t.Setenv("HERALD_ACK_WAIT", "soon")
		out.Reset()
		if err := PrintConfig(&out, Config{}); err == nil || !strings.Contains(err.Error(), "HERALD_ACK_WAIT") || out.Len() > 0 {
			t.Errorf("a value that does not parse: %v, printed %q", err, out.String())
		}
	})
}

func TestMaskCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                      "nats://127.0.0.1:4222",
		"nats://user:pw@nats:4222":                   "nats://masked@nats:4222",
		"nats://token@nats:4222":                     "nats://masked@nats:4222",
		"redis://:p@ss,word@redis:6379/0":            "redis://masked@redis:6379/0",
		"user:pw@nats:4222":                          "masked@nats:4222",
		"nats://a:pw@nats-1:4222,nats://nats-2:4222": "nats://masked@nats-1:4222,nats://nats-2:4222",
	} {
		if got := maskCredentials(in); got != want {
			t.Errorf("maskCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}

// The README's configuration table documents every setting, and nothing
// else; a default it writes as a value (`30s`) is the table's.
func TestREADMEConfiguration(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	byEnv := map[string]setting{}
	for _, s := range settings {
		byEnv[s.env] = s
	}
	documented := map[string]bool{}
	name := regexp.MustCompile("`([A-Z_]+)`")
	value := regexp.MustCompile("^ *`([^`]*)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(line, "| `") {
			continue
		}
		names := name.FindAllStringSubmatch(cells[1], -1)
		for _, m := range names {
			s, ok := byEnv[m[1]]
			if !ok {
				t.Errorf("README.md documents %s, which is no setting", m[1])
				continue
			}
			documented[m[1]] = true
			if v := value.FindStringSubmatch(cells[2]); v != nil && len(names) == 1 && v[1] != s.def {
				t.Errorf("README.md: %s defaults to %q; the settings say %q", m[1], v[1], s.def)
			}
		}
	}
	for _, s := range settings {
		if !documented[s.env] {
			t.Errorf("README.md's configuration table lacks %s", s.env)
		}
	}
}

// HERALD_PPROF_ADDR is a setting like the others, and startPprof serves on
// the address it is given, nothing when none.
func TestPprofAddr(t *testing.T) {
	clearEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("HERALD_PPROF_ADDR", addr)
	c, err := FromEnv(Config{})
	if err != nil || c.PprofAddr != addr {
		t.Fatalf("PprofAddr %q, %v; want %s", c.PprofAddr, err, addr)
	}
	startPprof("", zerolog.Nop())() // off: nothing to stop
	stop := startPprof(c.PprofAddr, zerolog.Nop())
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pprof: %s", resp.Status)
	}
	stop()
	if _, err := http.Get("http://" + addr + "/debug/pprof/cmdline"); err == nil {
		t.Error("pprof still served after stop")
	}
}

// The OTEL_* settings: off by default, every value that cannot work
// refused with its variable named, and the service name of each binary.
func TestTracingSettings(t *testing.T) {
	clearEnv(t)
	c, err := FromEnv(Config{})
	if err != nil || c.Tracing.Exporter != "none" {
		t.Fatalf("default exporter %q (%v), want none", c.Tracing.Exporter, err)
	}
	if tr, _, err := openTracer(t.Context(), c); tr.On() || err != nil {
		t.Fatalf("tracing on by default (%v)", err)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
	c, err = FromEnv(Config{})
	if err != nil {
		t.Fatal(err)
	}
	tr, flush, err := openTracer(t.Context(), c)
	if err != nil || !tr.On() {
		t.Fatalf("otlp over grpc: on %v, %v", tr.On(), err)
	}
	flush()

	for env, bad := range map[string]string{
		"OTEL_TRACES_EXPORTER":               "jaeger",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/json",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "collector:4318",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces",
		"OTEL_TRACES_SAMPLER":                "xray",
		"OTEL_TRACES_SAMPLER_ARG":            "1.5",
	} {
		clearEnv(t)
		t.Setenv("OTEL_TRACES_SAMPLER", "traceidratio")
		t.Setenv(env, bad)
		if _, err := FromEnv(Config{}); err == nil || !strings.Contains(err.Error(), env+"=") {
			t.Errorf("%s=%s: %v, want a refusal naming it", env, bad, err)
		}
	}

	for _, c := range []struct {
		roles Roles
		want  string
	}{
		{Roles{API: true, Router: true, Sender: true}, "herald"},
		{Roles{API: true}, "herald-ingest"},
		{Roles{Router: true}, "herald-router"},
		{Roles{Sender: true}, "herald-sender"},
	} {
		if got := serviceName(Tracing{}, c.roles); got != c.want {
			t.Errorf("service name of %+v: %q, want %q", c.roles, got, c.want)
		}
	}
	if got := serviceName(Tracing{ServiceName: "webhooks"}, Roles{Sender: true}); got != "webhooks" {
		t.Errorf("OTEL_SERVICE_NAME lost: %q", got)
	}
}
