package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/service"
)

// TestRolesAsProcesses runs ingest, router and two senders as separate
// processes against a nats-server process and Redis.
func TestRolesAsProcesses(t *testing.T) {
	t.Parallel()
	s := StartStack(t, 2)
	for _, p := range append([]*testenv.Process{s.Ingest, s.Router}, s.Senders...) {
		testenv.WaitHTTP(t, p.URL()+"/healthz", 5*time.Second)
	}

	t.Run("HTTPAndNATSEventsArriveSigned", func(t *testing.T) {
		tn := s.Tenant(t)
		rcv := NewReceiver(t)
		s.API.CreateEndpoint(t, tn.APIKey, rcv, []string{"post.*"}, nil)
		s.API.PostEvent(t, tn.APIKey, "proc-http", "post.created", trickyData)
		s.Bus.Publish(t, tn.ID, "post.updated", "proc-nats-typed", `{"type":"post.updated","data":`+trickyData+`}`)
		s.Bus.Publish(t, tn.ID, "post.deleted", "proc-nats-untyped", `{"data":`+trickyData+`}`)
		rcv.WaitDelivered(t, 15*time.Second, "proc-http", "proc-nats-typed", "proc-nats-untyped")
		s.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		checkDelivery(t, rcv, "proc-http", "post.created", trickyData)
		checkDelivery(t, rcv, "proc-nats-typed", "post.updated", trickyData)
		checkDelivery(t, rcv, "proc-nats-untyped", "post.deleted", trickyData)
	})

	// Ingest (which takes the PATCH) and router are different processes:
	// the change must travel through the store's watch and Redis.
	t.Run("PatchedEventsSeenByRoutingWithin1s", func(t *testing.T) {
		checkPatchSeen(t, s.Deployment)
	})
}

// TestAllInOneBinaryRestart runs the herald binary, stops it with SIGTERM and
// starts it again on the same data dir: tenants, endpoints, API keys and the
// generated admin token survive, and delivery goes on.
func TestAllInOneBinaryRestart(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	p, base, natsAddr := startAllInOneBinary(t, data, "HERALD_ADMIN_TOKEN=") // generated and kept in the data dir

	tokenPath := filepath.Join(data, "admin-token")
	token := readToken(t, tokenPath)
	// The welcome text follows readiness by a moment: wait for it. Its
	// stderr is a log file, not a terminal: it names the token's file and
	// keeps the token out of the log.
	testenv.Eventually(t, 10*time.Second, func() bool { return strings.Contains(p.Output(), "kept in "+tokenPath) },
		"the welcome text does not say where the generated admin token is")
	if strings.Contains(p.Output(), token) {
		t.Fatal("the admin token was written to stderr, which is a log file here")
	}
	api := newAPI(t, base)
	tn := api.CreateTenant(t, token, "restart")
	rcv := NewReceiver(t)
	ep := api.CreateEndpoint(t, tn.APIKey, rcv, []string{"post.*"}, nil)
	api.PostEvent(t, tn.APIKey, "before-restart", "post.created", trickyData)
	rcv.WaitDelivered(t, 15*time.Second, "before-restart")
	checkDelivery(t, rcv, "before-restart", "post.created", trickyData)

	natsAuth := heraldNATS(t, data)
	ownBefore, _ := service.ReadEmbeddedNATSAuth(data)

	p.Stop() // SIGTERM
	if err := p.ExitErr(); err != nil {
		t.Fatalf("herald did not exit cleanly on SIGTERM: %v", err)
	}
	if !strings.Contains(p.Output(), `"message":"stopped"`) {
		t.Errorf("herald log lacks its graceful \"stopped\" line")
	}

	p.Start()
	p.WaitHTTP(base+"/readyz", 30*time.Second)
	if again := readToken(t, tokenPath); again != token {
		t.Fatalf("admin token changed across the restart: %q -> %q", token, again)
	}
	// So did Herald's generated NATS credentials: tools configured with
	// them keep working.
	if ownAfter, err := service.ReadEmbeddedNATSAuth(data); err != nil || ownAfter != ownBefore {
		t.Fatalf("Herald's NATS credentials changed across the restart (%v)", err)
	}
	// The generated admin token, the tenant and its API key still work.
	var got Tenant
	api.Must(t, "GET", "/v1/tenants/"+tn.ID, token, nil, http.StatusOK, &got)
	if got.Name != "restart" {
		t.Errorf("tenant after restart: %+v", got)
	}
	var ep2 Endpoint
	api.Must(t, "GET", "/v1/endpoints/"+ep.ID, tn.APIKey, nil, http.StatusOK, &ep2)
	if ep2.Secret != ep.Secret || ep2.URL != ep.URL || !ep2.Enabled {
		t.Errorf("endpoint changed across the restart: %+v -> %+v", ep, ep2)
	}
	api.PostEvent(t, tn.APIKey, "after-restart", "post.created", trickyData)
	rcv.WaitDelivered(t, 15*time.Second, "after-restart")
	checkDelivery(t, rcv, "after-restart", "post.created", trickyData)
	// The event delivered (and acked) before the stop is not sent again.
	connectBus(t, "nats://"+natsAddr, natsAuth...).WaitQuiet(t, tn.ID, 10*time.Second)
	if n := rcv.Delivered("before-restart"); n != 1 {
		t.Errorf("event delivered before the graceful restart was delivered %d times", n)
	}
}

// startAllInOneBinary starts the herald binary (the all-in-one, as make run
// does) on free loopback ports with data dir data, the real Redis and the
// suite's short retries, and waits until it is ready. env (NAME=value) is
// added after the defaults, overriding them.
func startAllInOneBinary(t testing.TB, data string, env ...string) (p *testenv.Process, base, natsAddr string) {
	t.Helper()
	redisURL, prefix := testenv.Redis(t)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	natsAddr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	p = testenv.StartProcess(t, "herald", append([]string{
		"HERALD_DATA_DIR=" + data,
		"HERALD_HTTP_ADDR=" + addr,
		"HERALD_NATS_LISTEN=" + natsAddr,
		"REDIS_URL=" + redisURL,
		"HERALD_REDIS_PREFIX=" + prefix,
		"HERALD_RETRY_SCHEDULE=" + retrySchedule,
		"HERALD_ACK_WAIT=" + ackWait.String(),
		"HERALD_LOG_LEVEL=info",
	}, env...), filepath.Join(binDir(t), "herald"))
	base = "http://" + addr
	p.WaitHTTP(base+"/readyz", 30*time.Second)
	return p, base, natsAddr
}

func readToken(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("admin token file: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, "adm_") || len(tok) < 20 {
		t.Fatalf("admin token file holds %q", tok)
	}
	return tok
}
