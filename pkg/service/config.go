package service

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/payload"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/sender"
)

// Roles says which parts of Herald a process runs.
type Roles struct {
	API    bool // ingest: POST /v1/events and the management API
	Router bool
	Sender bool
}

// Config is everything a Herald process is told by its environment. The
// README's configuration table lists the variables; FromEnv reads them.
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
	// RetryAfterMax is the longest Retry-After honoured (0: the sender's
	// default, 1 hour); a receiver asking for more has its job
	// dead-lettered with that reason, never retried early.
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
}

// DefaultTenantEventsPerSecond is HERALD_TENANT_EVENTS_PER_SECOND's default.
const DefaultTenantEventsPerSecond = 1000

// DefaultTenantTestSendsPerSecond is HERALD_TENANT_TEST_SENDS_PER_SECOND's
// default: plenty for people pressing a button, not a load generator.
const DefaultTenantTestSendsPerSecond = 10

// FromEnv reads the configuration over the given defaults.
func FromEnv(def Config) (Config, error) {
	c := def
	var errs []string
	str := func(name string, dst *string) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			*dst = v
		}
	}
	num := func(name string, dst *int) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				errs = append(errs, fmt.Sprintf("%s=%q: want a whole number", name, v))
				return
			}
			*dst = n
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Sprintf("%s=%q: want a Go duration such as 30s or 24h", name, v))
				return
			}
			*dst = d
		}
	}
	boolean := func(name string, dst *bool) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: want true or false", name, v))
				return
			}
			*dst = b
		}
	}
	str("NATS_URL", &c.NATSURL)
	str("REDIS_URL", &c.RedisURL)
	str("HERALD_REDIS_PREFIX", &c.RedisPrefix)
	str("HERALD_HTTP_ADDR", &c.HTTPAddr)
	str("HERALD_ADMIN_TOKEN", &c.AdminToken)
	str("HERALD_DATA_DIR", &c.DataDir)
	str("HERALD_NATS_LISTEN", &c.NATSListen)
	str("HERALD_NATS_SYNC", &c.NATSSync)
	boolean("HERALD_EMBEDDED_NATS", &c.Embedded)
	str("HERALD_NATS_CREDS", &c.NATSClient.Creds)
	str("HERALD_NATS_NKEY", &c.NATSClient.NKeyFile)
	str("HERALD_NATS_USER", &c.NATSClient.User)
	str("HERALD_NATS_PASSWORD", &c.NATSClient.Password)
	str("HERALD_NATS_TOKEN", &c.NATSClient.Token)
	str("HERALD_NATS_TLS_CA", &c.NATSClient.TLSCA)
	str("HERALD_NATS_TLS_CERT", &c.NATSClient.TLSCert)
	str("HERALD_NATS_TLS_KEY", &c.NATSClient.TLSKey)
	str("HERALD_NATS_CALLOUT_SEED", &c.NATSClient.CalloutSeed)
	str("HERALD_NATS_SYSTEM_USER", &c.NATSClient.SystemUser)
	str("HERALD_NATS_SYSTEM_PASSWORD", &c.NATSClient.SystemPassword)
	errs = append(errs, c.NATSClient.check()...)
	str("HERALD_LOG_LEVEL", &c.LogLevel)
	str("HERALD_LOG_FORMAT", &c.LogFormat)
	num("HERALD_SENDER_WORKERS", &c.SenderWorkers)
	num("HERALD_ROUTER_WORKERS", &c.RouterWorkers)
	num("HERALD_STREAM_REPLICAS", &c.Streams.Replicas)
	dur("HERALD_DUPLICATE_WINDOW", &c.Streams.DuplicateWindow)
	dur("HERALD_EVENTS_RETENTION", &c.Streams.EventsMaxAge)
	dur("HERALD_ATTEMPTS_RETENTION", &c.Streams.AttemptsMaxAge)
	dur("HERALD_DLQ_RETENTION", &c.Streams.DLQMaxAge)
	dur("HERALD_ACK_WAIT", &c.AckWait)
	dur("HERALD_SCHEDULE_THRESHOLD", &c.ScheduleThreshold)
	dur("HERALD_RETRY_AFTER_MAX", &c.RetryAfterMax)
	dur("HERALD_DISABLE_AFTER", &c.DisableAfter)
	num("HERALD_SENDER_MAX_ACK_PENDING", &c.SenderMaxAckPending)
	num("HERALD_ENDPOINT_CONCURRENCY", &c.EndpointConcurrency)
	dur("HERALD_ENDPOINT_HANDOFF_WAIT", &c.EndpointHandoffWait)
	num("HERALD_ENDPOINT_HANDOFF_JOBS", &c.EndpointHandoffJobs)
	num("HERALD_SENDER_HANDOFF_JOBS", &c.SenderHandoffJobs)
	var handoffBytes int
	num("HERALD_SENDER_HANDOFF_BYTES", &handoffBytes)
	if handoffBytes > 0 {
		c.SenderHandoffBytes = int64(handoffBytes)
	}
	num("HERALD_BREAKER_FAILURES", &c.BreakerFailures)
	dur("HERALD_BREAKER_FAILING_FOR", &c.BreakerFailingFor)
	dur("HERALD_BREAKER_COOLDOWN", &c.BreakerCoolDown)
	var maxEvent int
	num("HERALD_MAX_EVENT_BYTES", &maxEvent)
	if maxEvent > 0 {
		c.MaxEventBytes = int64(maxEvent)
	}
	var inflight int
	num("HERALD_MAX_INFLIGHT_EVENT_BYTES", &inflight)
	if inflight > 0 {
		c.MaxInflightEventBytes = int64(inflight)
	}
	num("HERALD_INLINE_PAYLOAD_BYTES", &c.InlinePayloadBytes)
	var cacheBytes int
	num("HERALD_PAYLOAD_CACHE_BYTES", &cacheBytes)
	if cacheBytes > 0 {
		c.PayloadCacheBytes = int64(cacheBytes)
	}
	if v := os.Getenv("HERALD_RETRY_SCHEDULE"); v != "" {
		s, err := retry.Parse(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("HERALD_RETRY_SCHEDULE=%q: %v", v, err))
		} else {
			c.Schedule = s
		}
	}
	boolean("HERALD_EGRESS_ALLOW_PRIVATE", &c.EgressAllowPrivate)
	if v := os.Getenv("HERALD_EGRESS_ALLOW_CIDRS"); v != "" {
		ps, err := ParseCIDRs(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("HERALD_EGRESS_ALLOW_CIDRS=%q: %v", v, err))
		} else {
			c.EgressAllowCIDRs = ps
		}
	}
	str("HERALD_ENCRYPTION_KEY", &c.EncryptionKey)
	str("HERALD_ENCRYPTION_OLD_KEYS", &c.EncryptionOldKeys)
	boolean("HERALD_ALLOW_PLAINTEXT_SECRETS", &c.AllowPlaintextSecrets)
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
	if _, ok := os.LookupEnv("HERALD_TENANT_EVENTS_PER_SECOND"); !ok && c.TenantEventsPerSecond == 0 {
		c.TenantEventsPerSecond = DefaultTenantEventsPerSecond
	}
	num("HERALD_TENANT_EVENTS_PER_SECOND", &c.TenantEventsPerSecond)
	num("HERALD_TENANT_EVENTS_BURST", &c.TenantEventsBurst)
	if _, ok := os.LookupEnv("HERALD_TENANT_TEST_SENDS_PER_SECOND"); !ok && c.TenantTestSendsPerSecond == 0 {
		c.TenantTestSendsPerSecond = DefaultTenantTestSendsPerSecond
	}
	num("HERALD_TENANT_TEST_SENDS_PER_SECOND", &c.TenantTestSendsPerSecond)
	num("HERALD_TENANT_TEST_SENDS_BURST", &c.TenantTestSendsBurst)
	str("HERALD_EGRESS_PROXY", &c.EgressProxy)
	if c.EgressProxy != "" {
		if _, err := ParseProxy(c.EgressProxy); err != nil {
			errs = append(errs, fmt.Sprintf("HERALD_EGRESS_PROXY: %v", err))
		}
	}
	if c.NATSSync != "" && c.NATSSync != "always" {
		if _, err := time.ParseDuration(c.NATSSync); err != nil {
			errs = append(errs, fmt.Sprintf("HERALD_NATS_SYNC=%q: want \"always\" or a duration", c.NATSSync))
		}
	}
	// A job waiting in the sender is not reported in progress: past AckWait
	// JetStream would hand it to another sender too.
	if d := c.withDefaults(); d.EndpointHandoffWait >= d.AckWait {
		errs = append(errs, fmt.Sprintf("HERALD_ENDPOINT_HANDOFF_WAIT=%v: want less than HERALD_ACK_WAIT (%v)", d.EndpointHandoffWait, d.AckWait))
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

func (c Config) withDefaults() Config {
	if c.NATSURL == "" {
		c.NATSURL = "nats://127.0.0.1:4222"
	}
	if c.RedisURL == "" {
		c.RedisURL = "redis://127.0.0.1:6379"
	}
	if c.RedisPrefix == "" {
		c.RedisPrefix = "herald:"
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.NATSListen == "" {
		c.NATSListen = "127.0.0.1:4333"
	}
	if c.Schedule == nil {
		c.Schedule = retry.Default
	}
	if c.SenderWorkers <= 0 {
		c.SenderWorkers = 256
	}
	if c.RouterWorkers <= 0 {
		c.RouterWorkers = 64
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.ScheduleThreshold <= 0 {
		c.ScheduleThreshold = time.Minute
	}
	if c.SenderMaxAckPending <= 0 {
		c.SenderMaxAckPending = 20000
	}
	if c.DisableAfter <= 0 {
		c.DisableAfter = 5 * 24 * time.Hour
	}
	if c.EndpointConcurrency <= 0 {
		c.EndpointConcurrency = 10
	}
	if c.EndpointHandoffWait <= 0 {
		c.EndpointHandoffWait = sender.DefaultHandoffWait
	}
	if c.EndpointHandoffJobs <= 0 {
		c.EndpointHandoffJobs = sender.DefaultHandoffEndpointJobs
	}
	if c.SenderHandoffJobs <= 0 {
		c.SenderHandoffJobs = sender.DefaultHandoffJobs
	}
	if c.SenderHandoffBytes <= 0 {
		c.SenderHandoffBytes = sender.DefaultHandoffBytes
	}
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerFailingFor <= 0 {
		c.BreakerFailingFor = limit.DefaultFailingFor
	}
	if c.BreakerCoolDown <= 0 {
		c.BreakerCoolDown = 30 * time.Second
	}
	if c.MaxEventBytes <= 0 {
		c.MaxEventBytes = api.DefaultMaxEventBytes
	}
	if c.MaxInflightEventBytes <= 0 {
		c.MaxInflightEventBytes = api.DefaultMaxInflightEventBytes
	}
	if c.InlinePayloadBytes <= 0 {
		c.InlinePayloadBytes = payload.DefaultInlineBytes
	}
	if c.PayloadCacheBytes <= 0 {
		c.PayloadCacheBytes = payload.DefaultCacheBytes
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return c
}
