package service_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/natsauth"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/store"
)

// asyncErrs collects the errors the server reports on a connection
// (permission violations arrive asynchronously).
type asyncErrs chan error

func (a asyncErrs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	select {
	case a <- err:
	default:
	}
}

// want waits for a permission violation naming subject.
func (a asyncErrs) want(t *testing.T, what, subject string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-a:
			if strings.Contains(strings.ToLower(err.Error()), "permissions violation") && strings.Contains(err.Error(), subject) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no permissions violation for %q within 5s", what, subject)
		}
	}
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The all-in-one's embedded NATS opens only with credentials: Herald's own,
// generated in the data dir, or a tenant's API key as the token, which may
// publish that tenant's events (and store large bodies) and nothing else.
// A revoked key's live connection is closed within seconds and cannot come
// back.
func TestEmbeddedNATSRequiresCredentials(t *testing.T) {
	redisURL, prefix := testenv.Redis(t)
	rcv := newHooks(t)
	dataDir := t.TempDir()
	info := runInfo(t, service.Config{
		Roles:    service.Roles{API: true, Router: true, Sender: true},
		Embedded: true, DataDir: dataDir, NATSListen: "127.0.0.1:0",
		RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		AdminToken: testAdmin, EgressAllowPrivate: true, LogLevel: "warn",
	})
	base := "http://" + info.HTTPAddr
	url := info.NATSURL

	// Herald's own credentials: generated once, 0600, and they connect.
	if info.NATSAuthFile != service.NATSAuthFile(dataDir) {
		t.Fatalf("Info.NATSAuthFile = %q, want %q", info.NATSAuthFile, service.NATSAuthFile(dataDir))
	}
	st, err := os.Stat(info.NATSAuthFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", info.NATSAuthFile, st.Mode().Perm())
	}
	own, err := service.ReadEmbeddedNATSAuth(filepath.Dir(info.NATSAuthFile))
	if err != nil {
		t.Fatal(err)
	}
	producerAuthScenario(t, base, url, own.Options(), rcv)
	if _, err := nats.Connect(url, nats.UserInfo(own.User, "wrong")); err == nil {
		t.Fatal("Herald's user connected with a wrong password")
	}
}

// producerAuthScenario checks, on a running Herald whose NATS is at url
// (own: Herald's credentials), that only credentials open it: a tenant's
// API key may publish that tenant's events and store large bodies, nothing
// else; a revoked key's live connection closes within seconds, and it
// cannot connect again.
func producerAuthScenario(t *testing.T, base, url string, own []nats.Option, rcv *hooks) {
	t.Helper()
	operator, err := nats.Connect(url, own...)
	if err != nil {
		t.Fatalf("Herald's own credentials: %v", err)
	}
	defer operator.Close()
	ojs, _ := jetstream.New(operator)

	tnA := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "A"})
	tnB := mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "B"})
	a, keyA := tnA["id"].(string), tnA["api_key"].(string)
	b := tnB["id"].(string)
	extra := mustCall(t, 201, "POST", base+"/v1/tenants/"+a+"/keys", testAdmin, nil)
	keyA2, keyA2ID := extra["key"].(string), extra["id"].(string)
	mustCall(t, 201, "POST", base+"/v1/endpoints", keyA, map[string]any{"name": "r", "url": rcv.URL, "events": []string{"*"}})

	// No credentials, a wrong token, a key-shaped token that is no key:
	// refused.
	for name, opts := range map[string][]nats.Option{
		"anonymous":   nil,
		"wrong token": {nats.Token("not-a-key")},
		"unknown key": {nats.Token(store.APIKeyPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")},
	} {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			nc.Close()
			t.Fatalf("%s: connected, want authorization refused", name)
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("%s: %v, want an authorization violation", name, err)
		}
	}

	// A producer of tenant A with its second key.
	errs := asyncErrs(make(chan error, 16))
	disconnected := make(chan time.Time, 1)
	prod, err := nats.Connect(url, nats.Token(keyA2), nats.CustomInboxPrefix(natsauth.InboxPrefix(a)),
		nats.ErrorHandler(errs.handler), nats.ReconnectWait(100*time.Millisecond),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			select {
			case disconnected <- time.Now():
			default:
			}
		}))
	if err != nil {
		t.Fatalf("producer with an API key: %v", err)
	}
	defer prod.Close()
	js, _ := jetstream.New(prod)

	// Its tenant's events: stored and delivered.
	ack, err := js.Publish(shortCtx(t), bus.EventSubject(a, "post.published"), []byte(`{"id":"nats-1","type":"post.published","data":{"n":1}}`))
	if err != nil || ack.Stream != bus.StreamEvents {
		t.Fatalf("publish for its own tenant: %v, %+v", err, ack)
	}
	// A large body in the payload bucket under its tenant's prefix.
	obs, err := js.ObjectStore(shortCtx(t), bus.PayloadBucket)
	if err != nil {
		t.Fatalf("open %s: %v", bus.PayloadBucket, err)
	}
	if _, err := obs.Put(shortCtx(t), jetstream.ObjectMeta{Name: a + "/big.json"}, bytes.NewReader([]byte(`{"big":true}`))); err != nil {
		t.Fatalf("store a body under %s/: %v", a, err)
	}
	m := nats.NewMsg(bus.EventSubject(a, "export.ready"))
	m.Header.Set(bus.HeaderPayloadRef, a+"/big.json")
	m.Data = []byte(`{"id":"nats-2","type":"export.ready"}`)
	if _, err := js.PublishMsg(shortCtx(t), m); err != nil {
		t.Fatalf("publish with a payload ref: %v", err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.types["nats-1"] == "post.published" && rcv.types["nats-2"] == "export.ready"
	}, "events published on NATS with an API key were not delivered")

	// Everything else is refused.
	if _, err := js.Publish(shortCtx(t), bus.EventSubject(b, "post.published"), []byte(`{"id":"forged","type":"post.published"}`)); err == nil {
		t.Fatal("published for another tenant")
	}
	errs.want(t, "publish for tenant B", bus.EventSubject(b, "post.published"))
	if _, err := js.KeyValue(shortCtx(t), store.Bucket); err == nil {
		t.Fatal("opened the config KV bucket")
	}
	errs.want(t, "read the KV", "$JS.API.STREAM.INFO.KV_"+store.Bucket)
	if _, err := prod.Subscribe("$KV.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	errs.want(t, "subscribe to the KV", "$KV.>")
	if _, err := prod.Subscribe(">", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	errs.want(t, "subscribe to everything", ">")
	if err := js.DeleteStream(shortCtx(t), bus.StreamEvents); err == nil {
		t.Fatal("deleted EVENTS")
	}
	errs.want(t, "delete a stream", "$JS.API.STREAM.DELETE."+bus.StreamEvents)
	pst, err := js.Stream(shortCtx(t), "OBJ_"+bus.PayloadBucket)
	if err != nil {
		t.Fatalf("payload stream info (object store Put needs it): %v", err)
	}
	if err := pst.Purge(shortCtx(t)); err == nil {
		t.Fatal("purged the payload bucket")
	}
	errs.want(t, "purge the payload bucket", "$JS.API.STREAM.PURGE.OBJ_"+bus.PayloadBucket)
	// Nothing reached tenant B, and EVENTS is still there.
	ev, err := ojs.Stream(shortCtx(t), bus.StreamEvents)
	if err != nil {
		t.Fatalf("EVENTS after the producer's attempts: %v", err)
	}
	if _, err := ev.GetLastMsgForSubject(shortCtx(t), bus.EventsPrefix+b+".>"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("tenant B's subjects: %v, want no message", err)
	}

	// The first key's producer stays; the revoked key's is closed.
	other, err := nats.Connect(url, nats.Token(keyA), nats.CustomInboxPrefix(natsauth.InboxPrefix(a)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	revoked := time.Now()
	mustCall(t, 204, "DELETE", base+"/v1/tenants/"+a+"/keys/"+keyA2ID, testAdmin, nil)
	select {
	case at := <-disconnected:
		t.Logf("the revoked key's connection closed %v after the revocation", at.Sub(revoked).Round(time.Millisecond))
	case <-time.After(2*natsauth.SweepEvery + 3*time.Second):
		t.Fatalf("the revoked key's connection is still open %v after the revocation", time.Since(revoked).Round(time.Second))
	}
	if nc, err := nats.Connect(url, nats.Token(keyA2)); err == nil {
		nc.Close()
		t.Fatal("connected again with the revoked key")
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return prod.Status() != nats.CONNECTED }, "the revoked key's connection came back")
	time.Sleep(natsauth.SweepEvery) // a sweep passes: it must leave the live key's connection alone (the sleep is the behaviour under test)
	if !other.IsConnected() {
		t.Fatal("the connection of the tenant's other key was closed too")
	}
	ojs2, _ := jetstream.New(other)
	if _, err := ojs2.Publish(shortCtx(t), bus.EventSubject(a, "post.published"), []byte(`{"id":"nats-3","type":"post.published","data":{"n":3}}`)); err != nil {
		t.Fatalf("the tenant's other key no longer publishes: %v", err)
	}
}

// The same on an operator's nats-server (a current release, as a process)
// configured with Herald's auth callout: the separate services connect with
// their own user, the API role answers the callout, and, given a user of
// the system account, closes the connections of revoked keys.
func TestExternalNATSWithCallout(t *testing.T) {
	redisURL, prefix := testenv.Redis(t)
	rcv := newHooks(t)
	seed, err := natsauth.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := natsauth.ParseIssuer(seed)
	issuer, _ := kp.PublicKey()
	// The configuration docker-compose.yml runs: Herald's user in the
	// global account (where its streams are), a system account user,
	// producers through the callout; secrets from the environment.
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "deploy", "nats", "nats.conf")
	t.Setenv("HERALD_NATS_PASSWORD", "herald-secret")
	t.Setenv("HERALD_NATS_SYSTEM_PASSWORD", "system-secret")
	t.Setenv("HERALD_NATS_CALLOUT_ISSUER", issuer)
	// Its store dir, port and monitoring port give way to the test's.
	ns := testenv.NATSProcess(t, "-c", conf, "-m", strconv.Itoa(testenv.FreePort(t)))
	if nc, err := nats.Connect(ns.URL()); err == nil {
		nc.Close()
		t.Fatal("the nats-server under test lets anonymous clients in")
	}
	info := runInfo(t, service.Config{
		Roles:   service.Roles{API: true, Router: true, Sender: true},
		NATSURL: ns.URL(),
		NATSClient: service.NATSClient{User: "herald", Password: "herald-secret", CalloutSeed: seed,
			SystemUser: "herald-system", SystemPassword: "system-secret"},
		RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		AdminToken: testAdmin, EgressAllowPrivate: true, AllowPlaintextSecrets: true, LogLevel: "warn",
	})
	if info.NATSURL != ns.URL() || info.NATSAuthFile != "" {
		t.Fatalf("Info: NATS %q, auth file %q; want %q and none", info.NATSURL, info.NATSAuthFile, ns.URL())
	}
	producerAuthScenario(t, "http://"+info.HTTPAddr, ns.URL(), []nats.Option{nats.UserInfo("herald", "herald-secret")}, rcv)
}
