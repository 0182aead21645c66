package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/service"
)

// Settings every Herald under test runs with: short retries, so retry and
// dead-letter tests take milliseconds, and a short AckWait, so a killed
// sender's jobs move to another sender within seconds.
const (
	retrySchedule = "50ms,100ms,200ms"
	ackWait       = 2 * time.Second
	adminToken    = "adm_e2e-operator-token"
	// encryptionKey is HERALD_ENCRYPTION_KEY of the separate services (32
	// bytes, base64; a test key).
	encryptionKey = "ZTJlLWVuY3J5cHRpb24ta2V5LTMyLWJ5dGVzLWxvbmc="
)

// Deployment is a running Herald: its API and the NATS server it uses.
type Deployment struct {
	API        *API
	Bus        *Bus
	NATSURL    string
	AdminToken string
}

// Tenant creates a tenant named after the test.
func (d *Deployment) Tenant(t testing.TB) Tenant {
	t.Helper()
	return d.API.CreateTenant(t, d.AdminToken, t.Name())
}

// StartInProcess runs the all-in-one (API, router, sender, embedded NATS)
// inside the test process with service.Run, on random loopback ports, a
// temporary data dir and a real Redis. It stops at t.Cleanup and the test
// fails if it does not stop cleanly.
func StartInProcess(t testing.TB) *Deployment {
	t.Helper()
	redisURL, prefix := testenv.Redis(t)
	sched, err := retry.Parse(retrySchedule)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfg := service.Config{
		Roles:         service.Roles{API: true, Router: true, Sender: true},
		Embedded:      true,
		DataDir:       dataDir,
		NATSListen:    "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		RedisURL:      redisURL,
		RedisPrefix:   prefix,
		RedisOptional: true,
		HTTPAddr:      "127.0.0.1:0",
		AdminToken:    adminToken,
		Schedule:      sched,
		SenderWorkers: 64,
		RouterWorkers: 16,
		AckWait:       ackWait,
		MaxEventBytes: 1 << 20,
		LogLevel:      "info",
		// As services/herald: the test receivers listen on loopback.
		EgressAllowPrivate: true,
	}
	log := testenv.Logger(t).Level(zerolog.InfoLevel).With().Str("herald", "in-process").Logger()
	info, _ := testenv.Serve(t, func(ctx context.Context, ready func(service.Info)) error {
		return service.Run(ctx, cfg, log, ready)
	})
	if !info.Redis {
		t.Fatalf("in-process Herald runs without Redis at %s; want the real Redis", redisURL)
	}
	base := "http://" + info.HTTPAddr
	testenv.WaitHTTP(t, base+"/readyz", 15*time.Second)
	return &Deployment{API: newAPI(t, base), Bus: connectBus(t, info.NATSURL, heraldNATS(t, dataDir)...), NATSURL: info.NATSURL, AdminToken: adminToken}
}

// ---- binaries ----

// binDir returns the directory of the Herald binaries, built once.
func binDir(t testing.TB) string { return testenv.HeraldBinaries(t, false) }

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveHeraldBinaries()
	os.Exit(code)
}

// ---- roles as processes ----

// Stack is Herald as separate processes: a nats-server process, Redis,
// herald-ingest, herald-router and senders.
type Stack struct {
	*Deployment
	NATS    *testenv.Process
	Ingest  *testenv.Process
	Router  *testenv.Process
	Senders []*testenv.Process
	env     []string
}

// StartStack starts nats-server, Redis, ingest, router and n senders and
// waits until each answers /readyz. env (NAME=value) is added to every
// process's environment, after (so overriding) the defaults.
func StartStack(t testing.TB, senders int, env ...string) *Stack {
	t.Helper()
	bins := binDir(t)
	ns := testenv.NATSProcess(t)
	redisURL, prefix := testenv.Redis(t)
	s := &Stack{NATS: ns, env: []string{
		"HERALD_EMBEDDED_NATS=false",
		// The test receivers listen on loopback, refused by default: the
		// separate services get an exception, as an operator would give.
		"HERALD_EGRESS_ALLOW_CIDRS=127.0.0.0/8,::1",
		"NATS_URL=" + ns.URL(),
		"REDIS_URL=" + redisURL,
		"HERALD_REDIS_PREFIX=" + prefix,
		"HERALD_ADMIN_TOKEN=" + adminToken,
		"HERALD_ENCRYPTION_KEY=" + encryptionKey, // one key for every process
		"HERALD_TENANT_EVENTS_PER_SECOND=0",      // load tests measure delivery, not intake limits
		"HERALD_RETRY_SCHEDULE=" + retrySchedule,
		"HERALD_ACK_WAIT=" + ackWait.String(),
		"HERALD_LOG_LEVEL=info",
	}}
	s.env = append(s.env, env...)
	s.Ingest = s.start(t, "herald-ingest", filepath.Join(bins, "herald-ingest"))
	s.Router = s.start(t, "herald-router", filepath.Join(bins, "herald-router"))
	for i := range senders {
		s.Senders = append(s.Senders, s.start(t, fmt.Sprintf("herald-sender-%c", 'A'+i), filepath.Join(bins, "herald-sender")))
	}
	s.Deployment = &Deployment{API: newAPI(t, s.Ingest.URL()), Bus: connectBus(t, ns.URL()), NATSURL: ns.URL(), AdminToken: adminToken}
	return s
}

func (s *Stack) start(t testing.TB, name, bin string, env ...string) *testenv.Process {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	p := testenv.StartProcess(t, name, append(append(append([]string{}, s.env...), "HERALD_HTTP_ADDR="+addr), env...), bin)
	p.SetURL("http://" + addr)
	p.WaitHTTP(p.URL()+"/readyz", 20*time.Second)
	return p
}
