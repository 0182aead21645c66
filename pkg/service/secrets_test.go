package service_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/store"
)

// testEncryptionKey is HERALD_ENCRYPTION_KEY for the in-process separate
// services of these tests (32 bytes, base64).
var testEncryptionKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 32))

// run is start with the log captured at debug level; stop ends the
// process and waits for it.
func run(t *testing.T, cfg service.Config) (base string, logs *testenv.Buffer, stop func()) {
	t.Helper()
	t.Setenv("NATS_URL", "")
	t.Setenv("REDIS_URL", "")
	cfg, err := service.FromEnv(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs = &testenv.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process log:\n%s", logs)
		}
	})
	log := zerolog.New(logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	info, stop := testenv.Serve(t, func(ctx context.Context, ready func(service.Info)) error {
		return service.Run(ctx, cfg, log, ready)
	})
	return "http://" + info.HTTPAddr, logs, stop
}

// The all-in-one without HERALD_ENCRYPTION_KEY generates a key once, keeps
// it in the data dir (0600) and says so in one log line; after a restart it
// reads the same key, so the secrets stored before still open.
func TestAllInOneGeneratesEncryptionKeyOnce(t *testing.T) {
	t.Setenv("HERALD_ENCRYPTION_KEY", "")
	dir := t.TempDir()
	cfg := service.Config{
		Roles:    service.Roles{API: true, Router: true, Sender: true},
		Embedded: true, DataDir: dir, NATSListen: "127.0.0.1:0", RedisURL: "redis://127.0.0.1:1", RedisOptional: true,
		HTTPAddr: "127.0.0.1:0", AdminToken: testAdmin, EgressAllowPrivate: true, LogLevel: "debug",
	}
	base, logs, stop := run(t, cfg)
	path := filepath.Join(dir, "encryption-key")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no key in the data dir: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	key := strings.TrimSpace(string(b))
	if _, err := seal.ParseKey(key); err != nil {
		t.Fatalf("generated key: %v", err)
	}
	if n := strings.Count(logs.String(), "generated once and kept in the data dir"); n != 1 {
		t.Fatalf("%d log lines about the generated key, want 1", n)
	}
	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "a"})
	apiKey := tn["api_key"].(string)
	ep := mustCall(t, 201, "POST", base+"/v1/endpoints", apiKey, map[string]any{"name": "r", "url": "http://127.0.0.1:9/h", "events": []string{"*"}})
	secret := ep["secret"].(string)
	stop()
	if strings.Contains(logs.String(), key) {
		t.Fatal("the log holds the encryption key")
	}

	base, logs, stop = run(t, cfg)
	if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
		t.Fatal("the key file changed on restart")
	}
	if !strings.Contains(logs.String(), "secrets at rest") || strings.Contains(logs.String(), "generated once") {
		t.Fatalf("restart log should say the kept key is used, once")
	}
	got := mustCall(t, 200, "GET", base+"/v1/endpoints/"+ep["id"].(string)+"/secret", apiKey, nil)
	if got["secret"] != secret {
		t.Fatalf("after a restart the secret is %v, want the one created before", got["secret"])
	}
	stop()

	// Moving to a configured key: what the generated key sealed still
	// reads, and is re-sealed under the configured key.
	cfg.EncryptionKey = testEncryptionKey
	base, logs, _ = run(t, cfg)
	got = mustCall(t, 200, "GET", base+"/v1/endpoints/"+ep["id"].(string)+"/secret", apiKey, nil)
	if got["secret"] != secret {
		t.Fatalf("with HERALD_ENCRYPTION_KEY set the secret is %v, want the one created before", got["secret"])
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "re-encrypted") },
		"the endpoint was not re-sealed under the configured key")
}

// A separate service refuses to start without a key, unless plaintext is
// allowed, which it warns about loudly.
func TestSeparateServiceNeedsEncryptionKey(t *testing.T) {
	t.Setenv("HERALD_ENCRYPTION_KEY", "")
	t.Setenv("HERALD_ALLOW_PLAINTEXT_SECRETS", "")
	cfg := service.Config{Roles: service.Roles{Router: true}, NATSURL: testenv.NATS(t), RedisURL: "redis://127.0.0.1:1",
		HTTPAddr: "127.0.0.1:0", LogLevel: "warn"}
	err := service.Run(context.Background(), cfg, zerolog.Nop(), nil)
	if err == nil || !strings.Contains(err.Error(), "HERALD_ENCRYPTION_KEY is not set") || !strings.Contains(err.Error(), "HERALD_ALLOW_PLAINTEXT_SECRETS") {
		t.Fatalf("Run without a key = %v; want a refusal naming both variables", err)
	}

	cfg.Roles, cfg.AdminToken, cfg.AllowPlaintextSecrets, cfg.EgressAllowPrivate = service.Roles{API: true}, testAdmin, true, true
	base, logs, _ := run(t, cfg)
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "IN CLEAR") {
		t.Fatalf("no loud warning about plaintext secrets")
	}
	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "a"})
	mustCall(t, 201, "POST", base+"/v1/endpoints", tn["api_key"].(string), map[string]any{"name": "r", "url": "http://127.0.0.1:9/h", "events": []string{"*"}})
}

func TestEncryptionAndRateConfig(t *testing.T) {
	t.Setenv("HERALD_TENANT_EVENTS_PER_SECOND", "")
	os.Unsetenv("HERALD_TENANT_EVENTS_PER_SECOND")
	c, err := service.FromEnv(service.Config{})
	if err != nil || c.TenantEventsPerSecond != service.DefaultTenantEventsPerSecond {
		t.Fatalf("default rate %d, %v; want %d", c.TenantEventsPerSecond, err, service.DefaultTenantEventsPerSecond)
	}
	t.Setenv("HERALD_TENANT_EVENTS_PER_SECOND", "0")
	t.Setenv("HERALD_TENANT_EVENTS_BURST", "50")
	if c, err := service.FromEnv(service.Config{}); err != nil || c.TenantEventsPerSecond != 0 || c.TenantEventsBurst != 50 {
		t.Fatalf("rate %d burst %d, %v; want 0 (no limit) and 50", c.TenantEventsPerSecond, c.TenantEventsBurst, err)
	}
	bad := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	t.Setenv("HERALD_ENCRYPTION_KEY", bad)
	t.Setenv("HERALD_ENCRYPTION_OLD_KEYS", testEncryptionKey+",not-base64!")
	_, err = service.FromEnv(service.Config{})
	if err == nil || !strings.Contains(err.Error(), "HERALD_ENCRYPTION_KEY") || !strings.Contains(err.Error(), "HERALD_ENCRYPTION_OLD_KEYS, key 2") {
		t.Fatalf("FromEnv with bad keys = %v", err)
	}
	if strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "not-base64!") {
		t.Fatalf("configuration error quotes a key: %v", err)
	}
}

// Across a separate ingest and sender: the endpoint secret is sealed in KV
// and in Redis, deliveries are signed with it, and no log line of a
// succeeding or failing request carries an API key, the admin token, a
// secret or the encryption key, even at debug level.
func TestSecretsSealedEverywhereAndNeverLogged(t *testing.T) {
	t.Setenv("HERALD_ENCRYPTION_KEY", "")
	natsURL := testenv.NATS(t)
	redisURL, prefix := testenv.Redis(t)
	rcv := newHooks(t)
	common := service.Config{NATSURL: natsURL, RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		EgressAllowPrivate: true, LogLevel: "debug", EncryptionKey: testEncryptionKey}
	apiCfg := common
	apiCfg.Roles, apiCfg.AdminToken = service.Roles{API: true}, testAdmin
	workCfg := common
	workCfg.Roles = service.Roles{Router: true, Sender: true}
	base, apiLogs, _ := run(t, apiCfg)
	_, workLogs, _ := run(t, workCfg)

	tn := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "secrets"})
	apiKey, tenant := tn["api_key"].(string), tn["id"].(string)
	ep := mustCall(t, 201, "POST", base+"/v1/endpoints", apiKey, map[string]any{"name": "r", "url": rcv.URL, "events": []string{"*"}})
	id, secret := ep["id"].(string), ep["secret"].(string)
	rot := mustCall(t, 200, "POST", base+"/v1/endpoints/"+id+"/secret/rotate", apiKey, nil)
	newSecret := rot["secret"].(string)
	mustCall(t, 202, "POST", base+"/v1/events", apiKey, map[string]any{"type": "a.b", "id": "one", "data": 1})
	testenv.Eventually(t, 15*time.Second, func() bool { return rcv.count() == 1 }, "event not delivered")

	// Failing requests: wrong key, wrong admin token, a secret refused by
	// validation, a key in the wrong place.
	for _, c := range []struct{ method, path, auth string }{
		{"POST", "/v1/events", apiKey + "x"},
		{"GET", "/v1/tenants", testAdmin + "x"},
		{"GET", "/v1/endpoints", "hk_" + strings.Repeat("z", 43)},
	} {
		if status, _ := call(t, c.method, base+c.path, c.auth, map[string]any{"type": "a.b", "data": 1}); status != http.StatusUnauthorized {
			t.Fatalf("%s %s with a wrong token: %d, want 401", c.method, c.path, status)
		}
	}
	mustCall(t, 422, "POST", base+"/v1/endpoints/"+id+"/secret/rotate", apiKey, map[string]any{"secret": "whsec_!!" + secret})
	mustCall(t, 400, "POST", base+"/v1/endpoints", apiKey, map[string]any{"name": "r", "secret": secret, "api_key": apiKey})

	for name, logs := range map[string]string{"ingest": apiLogs.String(), "router/sender": workLogs.String()} {
		if !strings.Contains(logs, "secrets at rest: endpoint secrets are encrypted") {
			t.Errorf("%s log does not say secrets are encrypted", name)
		}
		for what, v := range map[string]string{"API key": apiKey, "API key body": apiKey[3:20], "admin token": testAdmin,
			"secret": secret, "rotated secret": newSecret, "secret body": strings.TrimPrefix(newSecret, "whsec_")[:16], "encryption key": testEncryptionKey} {
			if strings.Contains(logs, v) {
				t.Errorf("%s log holds the %s", name, what)
			}
		}
	}

	// At rest: the KV record and the Redis entry hold no secret in clear.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), store.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := kv.History(context.Background(), store.EndpointKey(tenant, id))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if v := string(h.Value()); strings.Contains(v, secret) || strings.Contains(v, newSecret) || !strings.Contains(v, "enc:v1:") {
			t.Fatalf("KV revision %d holds a secret in clear: %s", h.Revision(), v)
		}
	}
	opt, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	entry, err := rdb.Get(context.Background(), prefix+"cache:endpoints:"+tenant).Result()
	if err != nil {
		t.Fatalf("the router/sender did not cache the endpoint in Redis: %v", err)
	}
	if strings.Contains(entry, secret) || strings.Contains(entry, newSecret) || !strings.Contains(entry, "enc:v1:") {
		t.Fatalf("redis holds a secret in clear: %s", entry)
	}
}

// Request headers over 32 KiB answer 431 with a problem document: the
// HTTP server lets them through to the API, whose limit that is.
func TestHeaderTooLarge(t *testing.T) {
	base, _, _ := run(t, service.Config{Roles: service.Roles{API: true}, NATSURL: testenv.NATS(t), RedisURL: "redis://127.0.0.1:1",
		HTTPAddr: "127.0.0.1:0", AdminToken: testAdmin, EncryptionKey: testEncryptionKey, LogLevel: "warn"})
	req, _ := http.NewRequest("GET", base+"/v1/tenants", nil)
	req.Header.Set("Authorization", "Bearer "+testAdmin)
	req.Header.Set("X-Padding", strings.Repeat("a", 40<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("request with a 40 KiB header: %v; want a 431 answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("40 KiB header: %d %s, want a 431 problem document", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	req.Header.Set("X-Padding", strings.Repeat("a", 16<<10))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("16 KiB header: %d, want 200", resp.StatusCode)
	}
}
