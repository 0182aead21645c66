package sender_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/sender"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

var (
	secretOld = "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-secret-key-0123456789"))
	secretNew = "whsec_" + base64.StdEncoding.EncodeToString([]byte("new-secret-key-9876543210"))
)

// data is deliberately not in Go's canonical encoding: spacing, key order,
// an escape and an exponent must all survive as sent.
const data = `{ "z" : 1.0e2, "a":"caf\u00e9 & co = 100%+", "n":[1 ,2] }`

func testEvent() *heraldv1.Event {
	return &heraldv1.Event{Id: "evt_01HZX", TenantId: "tn_1", Type: "user.created", Data: []byte(data), AcceptedAtUnixMs: 1_700_000_000_123}
}

func endpoint(mod ...func(*store.Endpoint)) *store.Endpoint {
	e := &store.Endpoint{
		ID: "ep_1", TenantID: "tn_1", Name: "n", URL: "https://example.com/hook", Events: []string{"*"},
		Method: "POST", ContentType: store.ContentTypeJSON, Signature: sign.Standard, PayloadFormat: store.PayloadStandard,
		Secret: secretNew, Enabled: true, MaxAttempts: 5, TimeoutMS: 7000,
	}
	for _, m := range mod {
		m(e)
	}
	return e
}

const envelope = `{"type":"user.created","timestamp":"2023-11-14T22:13:20.123Z","data":` + data + `}`

func TestBody(t *testing.T) {
	tests := []struct {
		name   string
		format string
		ctype  string
		want   string // the body, or for forms the payload field
		form   bool
	}{
		{"standard json", store.PayloadStandard, store.ContentTypeJSON, envelope, false},
		{"raw json", store.PayloadRaw, store.ContentTypeJSON, data, false},
		{"standard form", store.PayloadStandard, store.ContentTypeForm, envelope, true},
		{"raw form", store.PayloadRaw, store.ContentTypeForm, data, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := testEvent()
			body := sender.Body(endpoint(func(e *store.Endpoint) { e.PayloadFormat, e.ContentType = tc.format, tc.ctype }), ev, ev.Data)
			got := string(body)
			if tc.form {
				if !strings.HasPrefix(got, "payload=") || strings.ContainsAny(got, " \"{") {
					t.Fatalf("form body %q is not payload=<urlencoded>", got)
				}
				vals, err := url.ParseQuery(got)
				if err != nil {
					t.Fatalf("form body %q: %v", got, err)
				}
				if len(vals) != 1 || len(vals["payload"]) != 1 {
					t.Fatalf("form fields %v, want payload only", vals)
				}
				got = vals.Get("payload")
			}
			if got != tc.want {
				t.Fatalf("body\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("body %s is not JSON", got)
			}
			if tc.format == store.PayloadStandard {
				var env map[string]json.RawMessage
				if err := json.Unmarshal([]byte(got), &env); err != nil || len(env) != 3 {
					t.Fatalf("envelope %s: %v", got, err)
				}
				if string(env["data"]) != data {
					t.Fatalf("data in the envelope is %s, want the bytes sent %s", env["data"], data)
				}
			}
		})
	}
}

// values returns a header's values whatever the case of its key in h (the
// request's map is written to the wire as is).
func values(h http.Header, name string) []string {
	var out []string
	for k, v := range h {
		if strings.EqualFold(k, name) {
			out = append(out, v...)
		}
	}
	return out
}

// capture serves one receiver and hands each request it got to the test.
func capture(t *testing.T) (*httptest.Server, <-chan *http.Request, <-chan []byte) {
	t.Helper()
	reqs, bodies := make(chan *http.Request, 10), make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs <- r
		bodies <- b
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, reqs, bodies
}

func send(t *testing.T, req deliver.Request) (*http.Request, []byte) {
	t.Helper()
	srv, reqs, bodies := capture(t)
	u, _ := url.Parse(req.URL)
	req.URL = srv.URL + u.RequestURI()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := deliver.New().Do(ctx, req)
	if !out.OK() {
		t.Fatalf("delivery to the test receiver failed: %+v", out)
	}
	return <-reqs, <-bodies
}

func TestBuildHeadersAndSignature(t *testing.T) {
	now := time.Now().Truncate(time.Second) // the attempt; the event was accepted long before
	ev := testEvent()
	ep := endpoint(func(e *store.Endpoint) {
		e.Method = "PUT"
		e.URL = "https://example.com/hook?x=1"
		e.Headers = map[string]string{"x-custom": "v1", "Authorization": "Bearer receiver-token"}
	})
	req, err := sender.Build(ep, ev, ev.Data, 3, now)
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "PUT" || req.URL != ep.URL || req.Timeout != 7*time.Second || string(req.Body) != envelope {
		t.Fatalf("request %s %s timeout %v body %s", req.Method, req.URL, req.Timeout, req.Body)
	}

	got, body := send(t, req)
	if string(body) != envelope {
		t.Fatalf("received body %s", body)
	}
	if got.Method != "PUT" || got.URL.RawQuery != "x=1" {
		t.Fatalf("received %s %s", got.Method, got.URL)
	}
	for name, want := range map[string]string{
		"webhook-id":        ev.Id,
		"webhook-timestamp": strconv.FormatInt(now.Unix(), 10),
		"Herald-Attempt":    "3",
		"Content-Type":      "application/json",
		"X-Custom":          "v1",
		"Authorization":     "Bearer receiver-token",
	} {
		if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("header %s = %q, want exactly %q", name, v, want)
		}
	}
	sigs := strings.Fields(got.Header.Get("webhook-signature"))
	if len(sigs) != 1 || !strings.HasPrefix(sigs[0], "v1,") {
		t.Fatalf("webhook-signature %q, want one v1 entry", sigs)
	}
	// The official library accepts it, with its replay tolerance: the
	// timestamp is the attempt's, not the (hours older) event's.
	wh, err := standardwebhooks.NewWebhook(secretNew)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, got.Header); err != nil {
		t.Fatalf("standardwebhooks.Verify: %v", err)
	}
	other, _ := standardwebhooks.NewWebhook(secretOld)
	if err := other.Verify(body, got.Header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Fatalf("Verify with another secret = %v, want ErrNoMatchingSignature", err)
	}
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-2] ^= 1
	if err := wh.Verify(tampered, got.Header); err == nil {
		t.Fatal("Verify accepted a tampered body")
	}

	// A retry later signs with its own time.
	later := now.Add(2 * time.Hour)
	req2, err := sender.Build(ep, ev, ev.Data, 4, later)
	if err != nil {
		t.Fatal(err)
	}
	if v := values(req2.Header, sign.HeaderTimestamp); len(v) != 1 || v[0] != strconv.FormatInt(later.Unix(), 10) {
		t.Fatalf("retry timestamp %q", v)
	}
	if v := values(req2.Header, sender.HeaderAttempt); len(v) != 1 || v[0] != "4" {
		t.Fatalf("retry attempt header %q", v)
	}
}

func TestBuildFormIsSignedAsSent(t *testing.T) {
	now := time.Now()
	ev := testEvent()
	ep := endpoint(func(e *store.Endpoint) { e.ContentType = store.ContentTypeForm; e.PayloadFormat = store.PayloadRaw })
	req, err := sender.Build(ep, ev, ev.Data, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	got, body := send(t, req)
	if got.Header.Get("Content-Type") != store.ContentTypeForm {
		t.Fatalf("Content-Type %q", got.Header.Get("Content-Type"))
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("payload") != data {
		t.Fatalf("form payload %q (%v), want %q", form.Get("payload"), err, data)
	}
	wh, _ := standardwebhooks.NewWebhook(secretNew)
	if err := wh.Verify(body, got.Header); err != nil {
		t.Fatalf("standardwebhooks.Verify of the form body: %v", err)
	}
}

func TestBuildRotation(t *testing.T) {
	now := time.Now()
	ev := testEvent()
	t.Run("two live secrets", func(t *testing.T) {
		ep := endpoint(func(e *store.Endpoint) {
			e.OldSecrets = []store.OldSecret{{Secret: secretOld, ExpiresAt: now.Add(time.Hour)}}
		})
		req, err := sender.Build(ep, ev, ev.Data, 1, now)
		if err != nil {
			t.Fatal(err)
		}
		got, body := send(t, req)
		sigs := strings.Fields(got.Header.Get("webhook-signature"))
		if len(sigs) != 2 || !strings.HasPrefix(sigs[0], "v1,") || !strings.HasPrefix(sigs[1], "v1,") || sigs[0] == sigs[1] {
			t.Fatalf("webhook-signature %q, want two distinct v1 entries", sigs)
		}
		for _, secret := range []string{secretOld, secretNew} {
			wh, _ := standardwebhooks.NewWebhook(secret)
			if err := wh.Verify(body, got.Header); err != nil {
				t.Fatalf("receiver holding %s...: %v", secret[:10], err)
			}
		}
	})
	t.Run("expired old secret", func(t *testing.T) {
		ep := endpoint(func(e *store.Endpoint) {
			e.OldSecrets = []store.OldSecret{{Secret: secretOld, ExpiresAt: now.Add(-time.Second)}}
		})
		req, err := sender.Build(ep, ev, ev.Data, 1, now)
		if err != nil {
			t.Fatal(err)
		}
		got, body := send(t, req)
		if sigs := strings.Fields(got.Header.Get("webhook-signature")); len(sigs) != 1 {
			t.Fatalf("webhook-signature %q, want only the current secret's", sigs)
		}
		old, _ := standardwebhooks.NewWebhook(secretOld)
		if err := old.Verify(body, got.Header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
			t.Fatalf("expired secret still verifies: %v", err)
		}
		cur, _ := standardwebhooks.NewWebhook(secretNew)
		if err := cur.Verify(body, got.Header); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBuildPutsNoSecretInHeaders(t *testing.T) {
	now := time.Now()
	ev := testEvent()
	edOld, _ := sign.GenerateSecret(sign.Ed25519)
	edNew, _ := sign.GenerateSecret(sign.Ed25519)
	plain := "github-style-secret-0123456789"
	tests := []struct {
		scheme      sign.Scheme
		secret, old string
		sigHeader   string
	}{
		{sign.Standard, secretNew, secretOld, "webhook-signature"},
		{sign.Ed25519, edNew, edOld, "webhook-signature"},
		{sign.GitHub, plain, plain + "-old", "X-Hub-Signature-256"},
		{sign.Hex, plain, plain + "-old", "X-Signature"},
	}
	for _, tc := range tests {
		t.Run(string(tc.scheme), func(t *testing.T) {
			ep := endpoint(func(e *store.Endpoint) {
				e.Signature, e.Secret = tc.scheme, tc.secret
				e.OldSecrets = []store.OldSecret{{Secret: tc.old, ExpiresAt: now.Add(time.Hour)}}
				e.Headers = map[string]string{"X-Tenant": "acme"}
			})
			req, err := sender.Build(ep, ev, ev.Data, 1, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(values(req.Header, tc.sigHeader)) == 0 {
				t.Fatalf("no %s header: %v", tc.sigHeader, req.Header)
			}
			var needles []string
			for _, s := range []string{tc.secret, tc.old} {
				needles = append(needles, s)
				for _, p := range []string{"whsec_", "whsk_"} {
					if rest, ok := strings.CutPrefix(s, p); ok {
						needles = append(needles, rest, rest[:16])
					}
				}
			}
			for k, vs := range req.Header {
				for _, v := range append([]string{k}, vs...) {
					for _, n := range needles {
						if strings.Contains(v, n) {
							t.Fatalf("header %s carries (part of) a secret: %q", k, v)
						}
					}
				}
			}
		})
	}
}

func TestBuildUnsigned(t *testing.T) {
	ev := testEvent()
	ep := endpoint(func(e *store.Endpoint) { e.Signature, e.Secret = sign.None, "" })
	req, err := sender.Build(ep, ev, ev.Data, 2, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := send(t, req)
	for _, h := range []string{"webhook-signature", "X-Hub-Signature-256", "X-Signature"} {
		if v := got.Header.Get(h); v != "" {
			t.Fatalf("unsigned endpoint got %s: %q", h, v)
		}
	}
	if got.Header.Get("webhook-id") != ev.Id || got.Header.Get("Herald-Attempt") != "2" || got.Header.Get("webhook-timestamp") == "" {
		t.Fatalf("unsigned request lacks identity headers: %v", got.Header)
	}
}

func TestBuildInvalidSecret(t *testing.T) {
	ev := testEvent()
	ep := endpoint(func(e *store.Endpoint) { e.Secret = "whsec_***" })
	if _, err := sender.Build(ep, ev, ev.Data, 1, time.Now()); err == nil {
		t.Fatal("Build signed with an invalid secret")
	}
}
