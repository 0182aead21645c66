package service

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/router"
	"github.com/heraldhq/herald/pkg/sender"
)

// A setting is one environment variable of the configuration. settings
// lists every one, once: FromEnv reads them, withDefaults applies their
// defaults, Validate names them, `herald config` prints them, and a test
// checks that the README's configuration table documents them.
type setting struct {
	env string
	// def is the default, written as the variable would be; "" when the
	// zero value is the default. Non-zero fields of the Config a binary
	// gives FromEnv (its own defaults) take precedence over it.
	def string
	// zero says what the zero value (0, "", none) means when an operator
	// may choose it, e.g. "no limit". When zero is "", the zero value only
	// stands for def: a 0 from the environment is refused, and
	// withDefaults replaces a zero field by def. A setting with both def
	// and zero has an "off" that is not its default: a Config built in code
	// keeps its zero, and FromEnv applies def only while the variable is
	// unset.
	zero   string
	secret secrecy
	// roles are the processes that read the setting: those running one of
	// these roles (or embedding NATS); none means every process.
	roles roleSet
	doc   string
	// field points at the setting's field of c. Its type picks the parser
	// and the printer: *string, *bool, *int, *int64, *time.Duration,
	// *retry.Schedule or *[]netip.Prefix.
	field func(c *Config) any
}

// roleSet names the processes that read a setting (setting.roles).
type roleSet uint8

const (
	forAPI roleSet = 1 << iota
	forRouter
	forSender
	forEmbedded // the all-in-one with NATS in process
)

// readBy reports whether a process configured by c reads the setting.
func (s setting) readBy(c Config) bool {
	return s.roles == 0 ||
		s.roles&forAPI != 0 && c.Roles.API ||
		s.roles&forRouter != 0 && c.Roles.Router ||
		s.roles&forSender != 0 && c.Roles.Sender ||
		s.roles&forEmbedded != 0 && c.Embedded
}

// Variables returns the environment variables a process configured by cfg
// (its roles, NATS embedded or not) reads, in the README's order: those of
// every process and those of its roles. Any other variable changes nothing
// for it, so a deployment (docker-compose.yml, deploy/kubernetes) gives
// each service these alone; the deploy module's tests hold it to that.
func Variables(cfg Config) []string {
	var vs []string
	for _, s := range settings {
		if s.readBy(cfg) {
			vs = append(vs, s.env)
		}
	}
	return vs
}

// secrecy says what `herald config` may show of a value.
type secrecy uint8

const (
	public secrecy = iota
	// secret values are never shown, only whether they are set.
	secret
	// credentialsInURL values are URLs whose user info (user:password@,
	// token@) is masked.
	credentialsInURL
)

// settings is the configuration, in the README's order.
var settings = []setting{
	{env: "NATS_URL", def: "nats://127.0.0.1:4222", secret: credentialsInURL, doc: "NATS server of the separate services",
		field: func(c *Config) any { return &c.NATSURL }},
	{env: "REDIS_URL", def: "redis://127.0.0.1:6379", secret: credentialsInURL, doc: "Redis: endpoint cache, rate limits, attempt index",
		field: func(c *Config) any { return &c.RedisURL }},
	{env: "HERALD_REDIS_PREFIX", def: "herald:", doc: "prefix of every Redis key Herald writes",
		field: func(c *Config) any { return &c.RedisPrefix }},
	{env: "HERALD_HTTP_ADDR", doc: "HTTP listen address; each binary has its own default",
		field: func(c *Config) any { return &c.HTTPAddr }},
	{env: "HERALD_ADMIN_TOKEN", zero: "none", secret: secret, roles: forAPI, doc: "operator token for tenant management; herald generates one",
		field: func(c *Config) any { return &c.AdminToken }},
	{env: "HERALD_DATA_DIR", def: "./data", roles: forEmbedded, doc: "herald: embedded NATS store, generated token, key and credentials",
		field: func(c *Config) any { return &c.DataDir }},
	{env: "HERALD_NATS_LISTEN", def: "127.0.0.1:4333", roles: forEmbedded, doc: "herald: client address of the embedded NATS",
		field: func(c *Config) any { return &c.NATSListen }},
	{env: "HERALD_NATS_SYNC", zero: "server default, 2m", roles: forEmbedded, doc: "herald: embedded file store fsync policy: always or a duration",
		field: func(c *Config) any { return &c.NATSSync }},
	{env: "HERALD_EMBEDDED_NATS", def: "false", roles: forEmbedded, doc: "run NATS in process (herald's default)",
		field: func(c *Config) any { return &c.Embedded }},
	{env: "HERALD_NATS_USER", zero: "none", doc: "user for NATS_URL",
		field: func(c *Config) any { return &c.NATSClient.User }},
	{env: "HERALD_NATS_PASSWORD", zero: "none", secret: secret, doc: "password of HERALD_NATS_USER",
		field: func(c *Config) any { return &c.NATSClient.Password }},
	{env: "HERALD_NATS_TOKEN", zero: "none", secret: secret, doc: "token for NATS_URL",
		field: func(c *Config) any { return &c.NATSClient.Token }},
	{env: "HERALD_NATS_CREDS", zero: "none", doc: ".creds file for NATS_URL",
		field: func(c *Config) any { return &c.NATSClient.Creds }},
	{env: "HERALD_NATS_NKEY", zero: "none", doc: "file holding a user nkey seed for NATS_URL",
		field: func(c *Config) any { return &c.NATSClient.NKeyFile }},
	{env: "HERALD_NATS_TLS_CA", zero: "none", doc: "CA file verifying the NATS server; turns TLS on",
		field: func(c *Config) any { return &c.NATSClient.TLSCA }},
	{env: "HERALD_NATS_TLS_CERT", zero: "none", doc: "client certificate file for NATS",
		field: func(c *Config) any { return &c.NATSClient.TLSCert }},
	{env: "HERALD_NATS_TLS_KEY", zero: "none", doc: "client key file for NATS",
		field: func(c *Config) any { return &c.NATSClient.TLSKey }},
	{env: "HERALD_NATS_CALLOUT_SEED", zero: "none", secret: secret, roles: forAPI, doc: "herald-ingest: account seed of the NATS auth callout",
		field: func(c *Config) any { return &c.NATSClient.CalloutSeed }},
	{env: "HERALD_NATS_SYSTEM_USER", zero: "none", roles: forAPI, doc: "NATS system account user, to close revoked keys' connections",
		field: func(c *Config) any { return &c.NATSClient.SystemUser }},
	{env: "HERALD_NATS_SYSTEM_PASSWORD", zero: "none", secret: secret, roles: forAPI, doc: "password of HERALD_NATS_SYSTEM_USER",
		field: func(c *Config) any { return &c.NATSClient.SystemPassword }},
	{env: "HERALD_RETRY_SCHEDULE", def: formatSchedule(retry.Default), roles: forSender, doc: "waits between attempts, ±20 % jitter",
		field: func(c *Config) any { return &c.Schedule }},
	{env: "HERALD_ACK_WAIT", def: formatDuration(bus.DefaultAckWait), roles: forRouter | forSender, doc: "how long a dead process's job or event waits before another takes it",
		field: func(c *Config) any { return &c.AckWait }},
	{env: "HERALD_SENDER_WORKERS", def: strconv.Itoa(sender.DefaultWorkers), roles: forSender, doc: "jobs a sender process works on at once",
		field: func(c *Config) any { return &c.SenderWorkers }},
	{env: "HERALD_ROUTER_WORKERS", def: strconv.Itoa(router.DefaultWorkers), roles: forRouter, doc: "events a router process routes at once",
		field: func(c *Config) any { return &c.RouterWorkers }},
	{env: "HERALD_ENDPOINT_CONCURRENCY", def: strconv.Itoa(limit.DefaultConcurrency), roles: forAPI | forSender, doc: "requests in flight per endpoint across all senders",
		field: func(c *Config) any { return &c.EndpointConcurrency }},
	{env: "HERALD_ENDPOINT_HANDOFF_WAIT", def: formatDuration(sender.DefaultHandoffWait), roles: forSender, doc: "longest wait in the sender for a fast endpoint's slot",
		field: func(c *Config) any { return &c.EndpointHandoffWait }},
	{env: "HERALD_ENDPOINT_HANDOFF_JOBS", def: strconv.Itoa(sender.DefaultHandoffEndpointJobs), roles: forSender, doc: "jobs waiting in one sender for one endpoint's slots",
		field: func(c *Config) any { return &c.EndpointHandoffJobs }},
	{env: "HERALD_SENDER_HANDOFF_JOBS", def: strconv.Itoa(sender.DefaultHandoffJobs), roles: forSender, doc: "jobs waiting in one sender for endpoints' slots",
		field: func(c *Config) any { return &c.SenderHandoffJobs }},
	{env: "HERALD_SENDER_HANDOFF_BYTES", def: strconv.Itoa(sender.DefaultHandoffBytes), roles: forSender, doc: "message bytes waiting in one sender for endpoints' slots",
		field: func(c *Config) any { return &c.SenderHandoffBytes }},
	{env: "HERALD_BREAKER_FAILURES", def: strconv.Itoa(limit.DefaultFailures), roles: forAPI | forSender, doc: "consecutive failures that open an endpoint's breaker",
		field: func(c *Config) any { return &c.BreakerFailures }},
	{env: "HERALD_BREAKER_FAILING_FOR", def: formatDuration(limit.DefaultFailingFor), roles: forAPI | forSender, doc: "how long failures must span before the breaker opens",
		field: func(c *Config) any { return &c.BreakerFailingFor }},
	{env: "HERALD_BREAKER_COOLDOWN", def: formatDuration(limit.DefaultCoolDown), roles: forAPI | forSender, doc: "open breaker's wait before its probe",
		field: func(c *Config) any { return &c.BreakerCoolDown }},
	{env: "HERALD_DISABLE_AFTER", def: formatDuration(sender.DefaultDisableAfter), roles: forSender, doc: "an endpoint failing this long without a success is disabled",
		field: func(c *Config) any { return &c.DisableAfter }},
	{env: "HERALD_SCHEDULE_THRESHOLD", def: formatDuration(sender.DefaultScheduleThreshold), roles: forSender, doc: "longest limit wait kept inside the sender consumer",
		field: func(c *Config) any { return &c.ScheduleThreshold }},
	{env: "HERALD_RETRY_AFTER_MAX", def: formatDuration(sender.DefaultRetryAfterMax), roles: forSender, doc: "longest Retry-After honoured",
		field: func(c *Config) any { return &c.RetryAfterMax }},
	{env: "HERALD_SENDER_MAX_ACK_PENDING", def: strconv.Itoa(bus.DefaultSenderMaxAckPending), roles: forSender, doc: "jobs handed out and not acked, across all senders",
		field: func(c *Config) any { return &c.SenderMaxAckPending }},
	{env: "HERALD_PPROF_ADDR", zero: "off", doc: "serve net/http/pprof on this address; keep it private",
		field: func(c *Config) any { return &c.PprofAddr }},
	{env: "HERALD_STREAM_REPLICAS", def: "1", doc: "replicas of every stream and bucket (3 on a cluster)",
		field: func(c *Config) any { return &c.Streams.Replicas }},
	{env: "HERALD_DUPLICATE_WINDOW", def: formatDuration(bus.DefaultDuplicateWindow), doc: "how long message ids are remembered for dedupe",
		field: func(c *Config) any { return &c.Streams.DuplicateWindow }},
	{env: "HERALD_EVENTS_RETENTION", def: formatDuration(bus.DefaultEventsMaxAge), doc: "how long events are kept",
		field: func(c *Config) any { return &c.Streams.EventsMaxAge }},
	{env: "HERALD_ATTEMPTS_RETENTION", def: formatDuration(bus.DefaultAttemptsMaxAge), doc: "how long the attempt history is kept",
		field: func(c *Config) any { return &c.Streams.AttemptsMaxAge }},
	{env: "HERALD_DLQ_RETENTION", def: formatDuration(bus.DefaultDLQMaxAge), doc: "how long dead letters wait for a replay",
		field: func(c *Config) any { return &c.Streams.DLQMaxAge }},
	{env: "HERALD_MAX_EVENT_BYTES", def: strconv.Itoa(api.DefaultMaxEventBytes), doc: "largest event data accepted",
		field: func(c *Config) any { return &c.MaxEventBytes }},
	{env: "HERALD_MAX_INFLIGHT_EVENT_BYTES", def: strconv.Itoa(api.DefaultMaxInflightEventBytes), roles: forAPI, doc: "event bytes one process holds at intake",
		field: func(c *Config) any { return &c.MaxInflightEventBytes }},
	{env: "HERALD_INLINE_PAYLOAD_BYTES", def: strconv.Itoa(payload.DefaultInlineBytes), doc: "larger event data goes to the object store",
		field: func(c *Config) any { return &c.InlinePayloadBytes }},
	{env: "HERALD_PAYLOAD_CACHE_BYTES", def: strconv.Itoa(payload.DefaultCacheBytes), doc: "decoded event bodies each process caches",
		field: func(c *Config) any { return &c.PayloadCacheBytes }},
	{env: "HERALD_EGRESS_ALLOW_PRIVATE", def: "false", roles: forAPI | forSender, doc: "deliver to loopback, private and link-local addresses (herald's default)",
		field: func(c *Config) any { return &c.EgressAllowPrivate }},
	{env: "HERALD_EGRESS_ALLOW_CIDRS", zero: "none", roles: forAPI | forSender, doc: "prefixes allowed although internal",
		field: func(c *Config) any { return &c.EgressAllowCIDRs }},
	{env: "HERALD_EGRESS_PROXY", zero: "none", secret: credentialsInURL, roles: forAPI | forSender, doc: "proxy every delivery goes through",
		field: func(c *Config) any { return &c.EgressProxy }},
	{env: "HERALD_ENCRYPTION_KEY", zero: "none", secret: secret, doc: "key sealing endpoint secrets; herald generates one",
		field: func(c *Config) any { return &c.EncryptionKey }},
	{env: "HERALD_ENCRYPTION_OLD_KEYS", zero: "none", secret: secret, doc: "earlier keys, still opening what they sealed",
		field: func(c *Config) any { return &c.EncryptionOldKeys }},
	{env: "HERALD_PORTAL_KEY", zero: "none", secret: secret, roles: forAPI, doc: "key signing webhooks portal sessions; herald generates one",
		field: func(c *Config) any { return &c.PortalKey }},
	{env: "HERALD_PUBLIC_URL", zero: "each request's host", doc: "URL clients reach the API at, for portal links",
		field: func(c *Config) any { return &c.PublicURL }},
	{env: "HERALD_ALLOW_PLAINTEXT_SECRETS", def: "false", doc: "let a separate service store secrets in clear without a key",
		field: func(c *Config) any { return &c.AllowPlaintextSecrets }},
	{env: "HERALD_TENANT_EVENTS_PER_SECOND", def: strconv.Itoa(DefaultTenantEventsPerSecond), zero: "no limit", roles: forAPI, doc: "POST /v1/events per tenant per second",
		field: func(c *Config) any { return &c.TenantEventsPerSecond }},
	{env: "HERALD_TENANT_EVENTS_BURST", zero: "the rate", roles: forAPI, doc: "events a tenant may send at once above the rate",
		field: func(c *Config) any { return &c.TenantEventsBurst }},
	{env: "HERALD_TENANT_TEST_SENDS_PER_SECOND", def: strconv.Itoa(DefaultTenantTestSendsPerSecond), zero: "no limit", roles: forAPI, doc: "test sends per tenant per second",
		field: func(c *Config) any { return &c.TenantTestSendsPerSecond }},
	{env: "HERALD_TENANT_TEST_SENDS_BURST", zero: "the rate", roles: forAPI, doc: "test sends a tenant may make at once above the rate",
		field: func(c *Config) any { return &c.TenantTestSendsBurst }},
	{env: "HERALD_LOG_LEVEL", def: "info", doc: "trace, debug, info, warn or error",
		field: func(c *Config) any { return &c.LogLevel }},
	{env: "HERALD_LOG_FORMAT", def: logAuto, doc: "auto (console at a terminal, json elsewhere), json or console",
		field: func(c *Config) any { return &c.LogFormat }},
	{env: "OTEL_TRACES_EXPORTER", def: tracesNone, doc: "otlp sends traces over OTLP; none: tracing off",
		field: func(c *Config) any { return &c.Tracing.Exporter }},
	{env: "OTEL_EXPORTER_OTLP_PROTOCOL", def: otlpHTTP, doc: "http/protobuf or grpc",
		field: func(c *Config) any { return &c.Tracing.Protocol }},
	{env: "OTEL_EXPORTER_OTLP_ENDPOINT", zero: "SDK default", secret: credentialsInURL, doc: "collector base URL (http/protobuf adds /v1/traces)",
		field: func(c *Config) any { return &c.Tracing.Endpoint }},
	{env: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", zero: "none", secret: credentialsInURL, doc: "collector URL for traces, as is; wins over the base URL",
		field: func(c *Config) any { return &c.Tracing.TracesEndpoint }},
	{env: "OTEL_SERVICE_NAME", zero: "the binary's name", doc: "service.name of the spans",
		field: func(c *Config) any { return &c.Tracing.ServiceName }},
	{env: "OTEL_TRACES_SAMPLER", def: "parentbased_always_on", doc: "which traces are recorded",
		field: func(c *Config) any { return &c.Tracing.Sampler }},
	{env: "OTEL_TRACES_SAMPLER_ARG", zero: "1", doc: "ratio of the traceidratio samplers",
		field: func(c *Config) any { return &c.Tracing.SamplerArg }},
}

// lookupEnv is the environment as the configuration sees it: a variable
// set to "" is unset.
func lookupEnv(name string) (string, bool) {
	v, ok := os.LookupEnv(name)
	return v, ok && v != ""
}

// noEnv is an empty environment: the defaults alone.
func noEnv(string) (string, bool) { return "", false }

// optionalOff reports whether the setting's zero value is an "off" its
// default is not (see setting.zero).
func (s setting) optionalOff() bool { return s.def != "" && s.zero != "" }

// parse sets the setting's field of c from v, the variable's text. The
// error names the variable, and quotes the value unless it is secret.
func (s setting) parse(c *Config, v string) error {
	err := s.set(c, v)
	switch {
	case err == nil:
		return nil
	case s.secret != public:
		return fmt.Errorf("%s: %w", s.env, err)
	default:
		return fmt.Errorf("%s=%q: %w", s.env, v, err)
	}
}

func (s setting) set(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = v
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		*p = b
	case *int:
		n, err := s.count(v, strconv.IntSize)
		if err != nil {
			return err
		}
		*p = int(n)
	case *int64:
		n, err := s.count(v, 64)
		if err != nil {
			return err
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d == 0 && s.zero == "" {
			return errors.New("want a Go duration such as 30s or 24h")
		}
		*p = d
	case *retry.Schedule:
		sc, err := retry.Parse(v)
		if err != nil {
			return err
		}
		*p = sc
	case *[]netip.Prefix:
		ps, err := ParseCIDRs(v)
		if err != nil {
			return err
		}
		*p = ps
	default:
		panic(fmt.Sprintf("setting %s: no parser for %T", s.env, p))
	}
	return nil
}

// mustSet sets a default; the settings' defaults parse (TestSettings).
func (s setting) mustSet(c *Config, v string) {
	if err := s.parse(c, v); err != nil {
		panic("default of " + err.Error())
	}
}

// count reads a whole number; 0 only where it means something.
func (s setting) count(v string, bits int) (int64, error) {
	n, err := strconv.ParseInt(v, 10, bits)
	switch {
	case err != nil || n < 0:
		return 0, errors.New("want a whole number")
	case n == 0 && s.zero == "":
		return 0, errors.New("want a whole number above 0")
	}
	return n, nil
}

// isZero reports whether the setting's field of c holds its zero value.
func (s setting) isZero(c *Config) bool { return reflect.ValueOf(s.field(c)).Elem().IsZero() }

// negative reports a number below 0, which no setting means (a Config
// built in code may hold one).
func (s setting) negative(c *Config) bool {
	switch p := s.field(c).(type) {
	case *int:
		return *p < 0
	case *int64:
		return *p < 0
	case *time.Duration:
		return *p < 0
	}
	return false
}

// format writes the setting's field of c as the variable would be written.
func (s setting) format(c *Config) string {
	switch p := s.field(c).(type) {
	case *string:
		return *p
	case *bool:
		return strconv.FormatBool(*p)
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *time.Duration:
		return formatDuration(*p)
	case *retry.Schedule:
		return formatSchedule(*p)
	case *[]netip.Prefix:
		ps := make([]string, len(*p))
		for i, pr := range *p {
			ps[i] = pr.String()
		}
		return strings.Join(ps, ",")
	}
	panic(fmt.Sprintf("setting %s: no printer for %T", s.env, s.field(c)))
}

// show is what `herald config` prints of the setting's value in c:
// secrets masked, a zero value with its meaning.
func (s setting) show(c *Config) string {
	v := s.format(c)
	switch {
	case s.isZero(c) && s.zero != "":
		if v == "" {
			return s.zero
		}
		return v + " (" + s.zero + ")"
	case v == "":
		return "-"
	case s.secret == secret:
		return "set, masked"
	case s.secret == credentialsInURL:
		return maskCredentials(v)
	}
	return v
}

// maskCredentials hides the user info of a URL (user:password@, token@):
// in herald config and in every log line that names a URL.
// It masks from the first scheme to the last "@", so that in a list of
// URLs (NATS_URL may hold several) a password holding "," or "@" is masked
// whole, at the cost of the hosts between.
func maskCredentials(v string) string {
	at := strings.LastIndex(v, "@")
	if at < 0 {
		return v
	}
	start := 0
	if i := strings.Index(v, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return v[:start] + "masked" + v[at:]
}

// formatDuration writes d as time.Duration does, without the zero units
// it ends with: 2m, 120h, 1h30m, 200ms.
func formatDuration(d time.Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

func formatSchedule(sc retry.Schedule) string {
	ds := make([]string, len(sc))
	for i, d := range sc {
		ds[i] = formatDuration(d)
	}
	return strings.Join(ds, ",")
}

// PrintConfig writes the configuration a process given def (a binary's
// own defaults) would run with: for every setting its variable, value,
// default and where the value came from, secrets masked. It returns
// FromEnv's error when the configuration is invalid: a value that does not
// parse prints nothing; a contradiction prints the table, then fails.
func PrintConfig(w io.Writer, def Config) error {
	cfg, err := readEnv(def, lookupEnv)
	if err != nil {
		return err
	}
	dflt, err := readEnv(def, noEnv)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tVALUE\tDEFAULT\tFROM\tMEANING")
	for _, s := range settings {
		from := "default"
		if _, ok := lookupEnv(s.env); ok {
			from = "env"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.env, s.show(&cfg), s.show(&dflt), from, s.doc)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return cfg.Validate()
}
