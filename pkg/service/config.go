package service

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/sender"
	"github.com/heraldhq/herald/pkg/session"
)

// Roles says which parts of Herald a process runs.
type Roles struct {
	API    bool // ingest: POST /v1/events and the management API
	Router bool
	Sender bool
}

// Config is everything a Herald process is told by its environment.
// settings (settings.go) lists the variables, their defaults and the field
// each sets; FromEnv reads them, Validate checks how they go together, and
// `herald config` prints them. A zero field stands for its default
// (withDefaults), except where the setting says zero means "off".
type Config struct {
	Roles Roles
	// Embedded runs NATS inside the process (the all-in-one default).
	Embedded bool
	// DataDir holds the embedded server's file store and the generated
	// admin token.
	DataDir string
	// NATSListen is the embedded server's client address for producers.
	NATSListen string
	// NATSSync is the embedded server's file store sync policy: "" (the
	// server default, every 2 minutes), "always", or a duration.
	NATSSync string
	NATSURL  string
	// NATSClient is how the separate services authenticate to NATS_URL,
	// and the auth callout for producers (natsconn.go).
	NATSClient NATSClient
	RedisURL   string
	// RedisPrefix starts every key Herald writes in Redis.
	RedisPrefix string
	// RedisOptional lets the process run on an in-process cache when no
	// Redis answers at start (the all-in-one's development default).
	RedisOptional bool
	HTTPAddr      string
	AdminToken    string
	Streams       bus.Config
	Schedule      retry.Schedule
	SenderWorkers int
	RouterWorkers int
	AckWait       time.Duration
	// ScheduleThreshold is the longest limit wait (an endpoint's cap or
	// rate limit) kept inside the sender's consumer; longer waits, breaker
	// waits and every retry leave it as message schedules.
	ScheduleThreshold time.Duration
	// RetryAfterMax is the longest Retry-After honoured; a receiver asking
	// for more has its job dead-lettered with that reason, never retried
	// early.
	RetryAfterMax time.Duration
	// SenderMaxAckPending bounds jobs handed out and not acked, across all
	// senders.
	SenderMaxAckPending int
	// DisableAfter is how long an endpoint may fail without a success
	// before it is disabled.
	DisableAfter time.Duration
	// EndpointConcurrency caps requests in flight per endpoint across all
	// senders.
	EndpointConcurrency int
	// EndpointHandoffWait, EndpointHandoffJobs, SenderHandoffJobs and
	// SenderHandoffBytes bound the jobs refused by a fast endpoint's cap
	// that wait in the sender for a slot freed in process (sender.Handoff):
	// the longest wait (shorter than AckWait), the jobs waiting for one
	// endpoint, and the jobs and message bytes waiting in one process.
	EndpointHandoffWait time.Duration
	EndpointHandoffJobs int
	SenderHandoffJobs   int
	SenderHandoffBytes  int64
	// BreakerFailures consecutive failures spanning at least
	// BreakerFailingFor without a success open an endpoint's breaker for
	// BreakerCoolDown (doubling on failed probes up to 10 minutes).
	BreakerFailures   int
	BreakerFailingFor time.Duration
	BreakerCoolDown   time.Duration
	// MaxEventBytes is the largest event data accepted, over HTTP and from
	// NATS producers' stored bodies; an HTTP body may add 64 KiB of JSON.
	MaxEventBytes int64
	// MaxInflightEventBytes bounds the event bodies one process holds at
	// intake, from before they are read until they are stored
	// (HERALD_MAX_INFLIGHT_EVENT_BYTES); over it, POST /v1/events answers
	// 503 with Retry-After.
	MaxInflightEventBytes int64
	// InlinePayloadBytes is the largest event data kept inside the event
	// message; larger data goes to the payload object store.
	InlinePayloadBytes int
	// PayloadCacheBytes caps the decoded event bodies a process caches.
	PayloadCacheBytes int64
	// EgressAllowPrivate turns the egress policy off: deliveries may go to
	// loopback, private and link-local addresses. For development only
	// (the all-in-one's default).
	EgressAllowPrivate bool
	// EgressAllowCIDRs are exceptions to the egress policy.
	EgressAllowCIDRs []netip.Prefix
	// EgressProxy is an http:// or https:// proxy every delivery goes
	// through; "" for none.
	EgressProxy string
	// EncryptionKey seals endpoint secrets in the store and in Redis: 32
	// bytes, base64 (HERALD_ENCRYPTION_KEY). Without it the all-in-one
	// generates one and keeps it in the data dir; the separate services
	// refuse to start unless AllowPlaintextSecrets.
	EncryptionKey string
	// EncryptionOldKeys are earlier keys, comma-separated, that still open
	// what was sealed under them (HERALD_ENCRYPTION_OLD_KEYS).
	EncryptionOldKeys string
	// PortalKey signs the webhooks portal's sessions: 32 bytes, base64
	// (HERALD_PORTAL_KEY). Without it the all-in-one generates one and
	// keeps it in the data dir; a separate API process serves no portal.
	// Replacing it ends every session.
	PortalKey string
	// PublicURL is where clients reach the API (HERALD_PUBLIC_URL), from
	// which portal links are made; without it, from each request's Host.
	PublicURL string
	// AllowPlaintextSecrets lets a process without EncryptionKey store
	// endpoint secrets in clear (HERALD_ALLOW_PLAINTEXT_SECRETS).
	AllowPlaintextSecrets bool
	// TenantEventsPerSecond limits POST /v1/events per tenant across all
	// ingest replicas (0: no limit); TenantEventsBurst is the bucket size
	// (0: one second's worth). FromEnv defaults the rate to
	// DefaultTenantEventsPerSecond when HERALD_TENANT_EVENTS_PER_SECOND is
	// not set; a Config built in code has no limit unless it sets one.
	TenantEventsPerSecond int
	TenantEventsBurst     int
	// TenantTestSendsPerSecond limits POST /v1/endpoints/{id}/test per
	// tenant across all API replicas, with bursts of TenantTestSendsBurst
	// (0: one second's worth); FromEnv defaults it like the event rate,
	// to DefaultTenantTestSendsPerSecond.
	TenantTestSendsPerSecond int
	TenantTestSendsBurst     int
	LogLevel                 string
	LogFormat                string
	// PprofAddr serves Go's profiler when set (pprof.go).
	PprofAddr string
	// Tracing is the OpenTelemetry tracing configuration (tracing.go).
	Tracing Tracing
}

// DefaultTenantEventsPerSecond is HERALD_TENANT_EVENTS_PER_SECOND's default.
const DefaultTenantEventsPerSecond = 1000

// DefaultTenantTestSendsPerSecond is HERALD_TENANT_TEST_SENDS_PER_SECOND's
// default: plenty for people pressing a button, not a load generator.
const DefaultTenantTestSendsPerSecond = 10

// FromEnv reads the configuration from the environment over def, a binary's
// own defaults: a variable set (and not empty) wins over def, def over the
// settings' defaults (settings.go). The result is validated.
func FromEnv(def Config) (Config, error) {
	c, err := readEnv(def, lookupEnv)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

// readEnv reads every setting from lookup over def and fills in the
// defaults. It reports values that do not parse, naming their variables;
// how the values go together is Validate's.
func readEnv(def Config, lookup func(string) (string, bool)) (Config, error) {
	c := def
	var errs []string
	for _, s := range settings {
		v, ok := lookup(s.env)
		switch {
		case ok:
			if err := s.parse(&c, v); err != nil {
				errs = append(errs, err.Error())
			}
		case s.optionalOff() && s.isZero(&c):
			// Unset: the default, unless def chose a value. Only the
			// variable set to 0 turns such a setting off; a Config built
			// in code without FromEnv keeps its zero, "off".
			s.mustSet(&c, s.def)
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return c.withDefaults(), nil
}

// ParseCIDRs reads a comma-separated list of CIDR prefixes; a bare address
// stands for itself (/32 or /128).
func ParseCIDRs(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR prefix such as 10.20.0.0/16 or fd00:1::/32", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParseProxy reads an egress proxy URL: http:// or https://, a host, and
// optionally user:password for the proxy's basic authentication.
func ParseProxy(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("want an http:// or https:// proxy URL such as http://egress-proxy:3128")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("a proxy URL has no path, query or fragment")
	}
	return u, nil
}

// withDefaults fills every zero field that stands for its setting's
// default (settings.go); a zero that means "off" (the tenant rates) stays.
func (c Config) withDefaults() Config {
	// The handoff's wait must stay well below AckWait (see Validate): unset,
	// it is its default or a quarter of a shorter AckWait.
	if c.EndpointHandoffWait == 0 {
		ack := c.AckWait
		if ack <= 0 {
			ack = bus.DefaultAckWait
		}
		c.EndpointHandoffWait = min(sender.DefaultHandoffWait, ack/4)
	}
	for _, s := range settings {
		if s.def != "" && s.zero == "" && s.isZero(&c) {
			s.mustSet(&c, s.def)
		}
	}
	return c
}

// Validate refuses a configuration that cannot work, with every problem
// named by its variables: values that do not parse as what they hold, and
// settings that contradict each other. Zero fields count as their
// defaults. FromEnv calls it; a Config built in code should be too.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []string
	for _, s := range settings {
		if s.negative(&c) {
			errs = append(errs, fmt.Sprintf("%s=%s: want a value not below 0", s.env, s.format(&c)))
		}
	}
	errs = append(errs, c.NATSClient.check()...)
	errs = append(errs, c.Tracing.check()...)
	// The errors name the variable and the problem, never the key.
	if c.EncryptionKey != "" {
		if _, err := seal.ParseKey(c.EncryptionKey); err != nil {
			errs = append(errs, "HERALD_ENCRYPTION_KEY: "+err.Error())
		}
	}
	for i, k := range strings.Split(c.EncryptionOldKeys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			if _, err := seal.ParseKey(k); err != nil {
				errs = append(errs, fmt.Sprintf("HERALD_ENCRYPTION_OLD_KEYS, key %d: %v", i+1, err))
			}
		}
	}
	if c.PortalKey != "" {
		if _, err := session.Parse(c.PortalKey); err != nil {
			errs = append(errs, "HERALD_PORTAL_KEY: "+err.Error())
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, "HERALD_PUBLIC_URL: want an http or https URL such as https://webhooks.example.com")
		}
	}
	if c.EgressProxy != "" {
		if _, err := ParseProxy(c.EgressProxy); err != nil {
			errs = append(errs, fmt.Sprintf("HERALD_EGRESS_PROXY: %v", err))
		}
	}
	// A typo in the log level or format would quietly log at info or as
	// JSON, not what the operator asked for.
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Sprintf("HERALD_LOG_LEVEL=%q: %v", c.LogLevel, err))
	}
	if err := checkLogFormat(c.LogFormat); err != nil {
		errs = append(errs, fmt.Sprintf("HERALD_LOG_FORMAT=%q: %v", c.LogFormat, err))
	}
	if c.NATSSync != "" && c.NATSSync != "always" {
		if _, err := time.ParseDuration(c.NATSSync); err != nil {
			errs = append(errs, fmt.Sprintf("HERALD_NATS_SYNC=%q: want \"always\" or a duration", c.NATSSync))
		}
	}
	// A job waiting in the sender for a slot (sender.Handoff) is not
	// reported in progress: past AckWait JetStream would hand it to another
	// sender too.
	if c.EndpointHandoffWait >= c.AckWait {
		errs = append(errs, fmt.Sprintf("HERALD_ENDPOINT_HANDOFF_WAIT=%s: want less than HERALD_ACK_WAIT (%s)",
			formatDuration(c.EndpointHandoffWait), formatDuration(c.AckWait)))
	}
	// An event whose router died comes back after AckWait, and the router
	// that takes it publishes its jobs again: DELIVERIES stores them once
	// only while its duplicate window still remembers their Nats-Msg-Id.
	if c.AckWait >= c.Streams.DuplicateWindow {
		errs = append(errs, fmt.Sprintf("HERALD_ACK_WAIT=%s: want less than HERALD_DUPLICATE_WINDOW (%s), which dedupes the jobs of a redelivered event",
			formatDuration(c.AckWait), formatDuration(c.Streams.DuplicateWindow)))
	}
	// JetStream refuses a stream whose duplicate window outlasts its max
	// age: EVENTS and HELD keep HERALD_EVENTS_RETENTION, DLQ
	// HERALD_DLQ_RETENTION (ATTEMPTS has no window).
	for _, r := range []struct {
		env    string
		maxAge time.Duration
	}{{"HERALD_EVENTS_RETENTION", c.Streams.EventsMaxAge}, {"HERALD_DLQ_RETENTION", c.Streams.DLQMaxAge}} {
		if c.Streams.DuplicateWindow > r.maxAge {
			errs = append(errs, fmt.Sprintf("HERALD_DUPLICATE_WINDOW=%s: want at most %s (%s)",
				formatDuration(c.Streams.DuplicateWindow), r.env, formatDuration(r.maxAge)))
		}
	}
	// HERALD_SCHEDULE_THRESHOLD needs no rule against HERALD_ACK_WAIT: a
	// limit wait kept in the sender's consumer is a nak with a delay
	// (sender.wait), and JetStream runs no AckWait on a nacked message.
	if len(errs) > 0 {
		return fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return nil
}
