package store_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/valid"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openStore opens a store on a fresh embedded JetStream server.
func openStore(t *testing.T) (*store.Store, jetstream.JetStream) {
	t.Helper()
	js := testenv.JetStream(t)
	st, err := store.Open(testCtx(t), js)
	if err != nil {
		t.Fatal(err)
	}
	return st, js
}

func mustTenant(t *testing.T, st *store.Store, name string) (store.Tenant, string) {
	t.Helper()
	tn, key, err := st.CreateTenant(testCtx(t), name)
	if err != nil {
		t.Fatalf("CreateTenant(%q): %v", name, err)
	}
	return tn, key
}

func mustEndpoint(t *testing.T, st *store.Store, tenant string, mod ...func(*store.Endpoint)) store.Endpoint {
	t.Helper()
	e := store.Endpoint{Name: "hook", URL: "https://example.com/hook", Events: []string{"user.*"}, Enabled: true}
	for _, m := range mod {
		m(&e)
	}
	got, err := st.CreateEndpoint(testCtx(t), tenant, e)
	if err != nil {
		t.Fatalf("CreateEndpoint: %v", err)
	}
	return got
}

func errFields(err error) []string {
	var ve valid.Errors
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	for _, f := range ve {
		out = append(out, f.Field)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestTenantLifecycle(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)

	a, keyA := mustTenant(t, st, "Acme")
	b, _ := mustTenant(t, st, "Globex")
	if !strings.HasPrefix(a.ID, "tn_") || a.ID == b.ID {
		t.Fatalf("tenant ids %q, %q", a.ID, b.ID)
	}
	if !strings.HasPrefix(keyA, store.APIKeyPrefix) {
		t.Fatalf("api key %q lacks prefix %q", keyA, store.APIKeyPrefix)
	}
	if a.Name != "Acme" || a.CreatedAt.IsZero() || !a.UpdatedAt.Equal(a.CreatedAt) {
		t.Fatalf("created tenant %+v", a)
	}

	got, err := st.GetTenant(ctx, a.ID)
	if err != nil || got.ID != a.ID || got.Name != "Acme" || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("GetTenant = %+v, %v; want %+v", got, err, a)
	}
	for _, id := range []string{"tn_missing", "", "tenant.*", ">", "a.b", "*"} {
		if _, err := st.GetTenant(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTenant(%q) error = %v, want ErrNotFound", id, err)
		}
	}

	list, err := st.ListTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("ListTenants = %+v, want [%s %s] in creation order", list, a.ID, b.ID)
	}

	renamed, err := st.RenameTenant(ctx, a.ID, "Acme Corp")
	if err != nil {
		t.Fatal(err)
	}
	if renamed.Name != "Acme Corp" || renamed.ID != a.ID || !renamed.CreatedAt.Equal(a.CreatedAt) || renamed.UpdatedAt.Before(a.UpdatedAt) {
		t.Fatalf("RenameTenant = %+v", renamed)
	}
	if got, _ := st.GetTenant(ctx, a.ID); got.Name != "Acme Corp" {
		t.Fatalf("after rename GetTenant name = %q", got.Name)
	}
	if _, err := st.RenameTenant(ctx, "tn_missing", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RenameTenant(missing) error = %v, want ErrNotFound", err)
	}

	if err := st.DeleteTenant(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetTenant(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetTenant after delete error = %v", err)
	}
	if err := st.DeleteTenant(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteTenant error = %v, want ErrNotFound", err)
	}
	list, _ = st.ListTenants(ctx)
	if len(list) != 1 || list[0].ID != b.ID {
		t.Fatalf("ListTenants after delete = %+v", list)
	}
}

func TestAPIKeys(t *testing.T) {
	st, js := openStore(t)
	ctx := testCtx(t)
	a, key1 := mustTenant(t, st, "A")
	b, keyB := mustTenant(t, st, "B")
	key2, k2, err := st.CreateAPIKey(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if key2 == key1 || k2.TenantID != a.ID || !strings.HasPrefix(key2, k2.Prefix) || len(k2.Prefix) >= len(key2)/2 {
		t.Fatalf("second key %q, record %+v", key2, k2)
	}

	// Only hashes are stored: no clear key appears anywhere in the bucket's
	// stream, in any key or value, current or historical.
	kvs, err := js.Stream(ctx, "KV_"+store.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := kvs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		t.Fatal("config stream is empty")
	}
	var apikeyEntries int
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := kvs.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(m.Subject, "$KV."+store.Bucket+".apikey.") {
			apikeyEntries++
		}
		for _, k := range []string{key1, key2, keyB} {
			secret := strings.TrimPrefix(k, store.APIKeyPrefix)
			if strings.Contains(m.Subject, secret) || strings.Contains(string(m.Data), secret) {
				t.Fatalf("clear API key stored in %s: %s", m.Subject, m.Data)
			}
			raw, _ := base64.RawURLEncoding.DecodeString(secret)
			if strings.Contains(string(m.Data), string(raw)) {
				t.Fatalf("API key bytes stored in %s", m.Subject)
			}
		}
	}
	if apikeyEntries != 3 {
		t.Fatalf("found %d api key entries in the bucket, want 3", apikeyEntries)
	}

	keys, err := st.APIKeys(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("APIKeys(a) = %+v, want 2", keys)
	}
	for _, k := range keys {
		if k.Hash == "" || strings.Contains(k.Hash, strings.TrimPrefix(key1, "hk_")) || strings.Contains(k.Hash, strings.TrimPrefix(key2, "hk_")) {
			t.Fatalf("key record %+v", k)
		}
	}

	for _, tc := range []struct{ key, tenant string }{{key1, a.ID}, {key2, a.ID}, {keyB, b.ID}} {
		got, err := st.Authenticate(ctx, tc.key)
		if err != nil || got != tc.tenant {
			t.Fatalf("Authenticate(%s...) = %q, %v; want %q", tc.key[:10], got, err, tc.tenant)
		}
	}
	rest := strings.TrimPrefix(key1, store.APIKeyPrefix)
	flipped := []byte(key1)
	flipped[len(flipped)-1] ^= 1
	for name, k := range map[string]string{
		"another prefix":   "sk_" + rest,
		"no prefix":        rest,
		"uppercase prefix": "HK_" + rest,
		"changed byte":     string(flipped),
		"truncated":        key1[:len(key1)-1],
		"extended":         key1 + "A",
		"empty":            "",
		"prefix only":      store.APIKeyPrefix,
		"too long":         key1 + strings.Repeat("A", 100),
		"hash of the key":  keys[0].Hash,
	} {
		if got, err := st.Authenticate(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Authenticate(%s) = %q, %v; want ErrNotFound", name, got, err)
		}
	}

	// Revoking through another tenant finds nothing and changes nothing.
	if err := st.RevokeAPIKey(ctx, b.ID, k2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeAPIKey via other tenant error = %v, want ErrNotFound", err)
	}
	if _, err := st.Authenticate(ctx, key2); err != nil {
		t.Fatalf("key revoked through another tenant: %v", err)
	}
	if err := st.RevokeAPIKey(ctx, a.ID, k2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Authenticate(ctx, key2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked key authenticates: %v", err)
	}
	if got, err := st.Authenticate(ctx, key1); err != nil || got != a.ID {
		t.Fatalf("other key of the tenant after revoke = %q, %v", got, err)
	}
	if err := st.RevokeAPIKey(ctx, a.ID, k2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second revoke error = %v, want ErrNotFound", err)
	}
	if keys, _ := st.APIKeys(ctx, a.ID); len(keys) != 1 || keys[0].ID == k2.ID {
		t.Fatalf("APIKeys after revoke = %+v", keys)
	}
}

func TestCreateEndpointDefaults(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)
	tn, _ := mustTenant(t, st, "A")
	e, err := st.CreateEndpoint(ctx, tn.ID, store.Endpoint{Name: "n", URL: "https://example.com/h", Events: []string{"*"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.ID, "ep_") || e.TenantID != tn.ID {
		t.Fatalf("ids: %q %q", e.ID, e.TenantID)
	}
	if e.Method != http.MethodPost || e.ContentType != "application/json" || e.Signature != sign.Standard ||
		e.PayloadFormat != "standard" || e.MaxAttempts != 5 || e.TimeoutMS != 10000 || e.RateLimit != 0 || !e.Enabled {
		t.Fatalf("defaults not applied: %+v", e)
	}
	if !strings.HasPrefix(e.Secret, "whsec_") || sign.ValidateSecret(sign.Standard, e.Secret) != nil {
		t.Fatalf("generated secret %q is not a whsec_ secret", e.Secret)
	}
	if e.CreatedAt.IsZero() || !e.UpdatedAt.Equal(e.CreatedAt) {
		t.Fatalf("timestamps %v %v", e.CreatedAt, e.UpdatedAt)
	}
	e2, _ := st.CreateEndpoint(ctx, tn.ID, store.Endpoint{Name: "n", URL: "https://example.com/h", Events: []string{"*"}})
	if e2.Secret == e.Secret || e2.ID == e.ID {
		t.Fatal("two endpoints share a secret or an id")
	}

	got, err := st.GetEndpoint(ctx, tn.ID, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != e.Secret || got.Method != e.Method || got.MaxAttempts != e.MaxAttempts || got.URL != e.URL || !got.CreatedAt.Equal(e.CreatedAt) {
		t.Fatalf("GetEndpoint = %+v, want %+v", got, e)
	}

	// A scheme given explicitly keeps its own secret format; none has none.
	ed := mustEndpoint(t, st, tn.ID, func(e *store.Endpoint) { e.Signature = sign.Ed25519 })
	if !strings.HasPrefix(ed.Secret, "whsk_") {
		t.Fatalf("ed25519 secret %q", ed.Secret)
	}
	none := mustEndpoint(t, st, tn.ID, func(e *store.Endpoint) { e.Signature = sign.None })
	if none.Secret != "" {
		t.Fatalf("unsigned endpoint got secret %q", none.Secret)
	}
	given := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123"))
	own := mustEndpoint(t, st, tn.ID, func(e *store.Endpoint) { e.Secret = given })
	if own.Secret != given {
		t.Fatalf("given secret replaced by %q", own.Secret)
	}

	if _, err := st.CreateEndpoint(ctx, "tn_missing", store.Endpoint{Name: "n", URL: "https://example.com/h", Events: []string{"*"}}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CreateEndpoint for a missing tenant error = %v, want ErrNotFound", err)
	}
	eps, _ := st.ListEndpoints(ctx, tn.ID)
	if len(eps) != 5 {
		t.Fatalf("ListEndpoints = %d endpoints, want 5", len(eps))
	}
	for i := 1; i < len(eps); i++ {
		if eps[i-1].ID >= eps[i].ID {
			t.Fatalf("ListEndpoints not ordered by id: %s then %s", eps[i-1].ID, eps[i].ID)
		}
	}
}

func validEndpoint() store.Endpoint {
	return store.Endpoint{
		Name: "n", URL: "https://example.com/h", Events: []string{"user.created", "post.*"},
		Method: "POST", ContentType: "application/json", Signature: sign.Standard, PayloadFormat: "standard",
		Secret:      "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123")),
		MaxAttempts: 5, TimeoutMS: 10000,
	}
}

func TestEndpointValidate(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*store.Endpoint)
		field string // "" means valid
	}{
		{"valid", func(*store.Endpoint) {}, ""},
		{"http url", func(e *store.Endpoint) { e.URL = "http://10.0.0.1:8080/x?y=1" }, ""},
		{"put", func(e *store.Endpoint) { e.Method = "PUT" }, ""},
		{"patch", func(e *store.Endpoint) { e.Method = "PATCH" }, ""},
		{"form", func(e *store.Endpoint) { e.ContentType = "application/x-www-form-urlencoded" }, ""},
		{"raw", func(e *store.Endpoint) { e.PayloadFormat = "raw" }, ""},
		{"all events", func(e *store.Endpoint) { e.Events = []string{"*"} }, ""},
		{"custom header", func(e *store.Endpoint) { e.Headers = map[string]string{"Authorization": "Bearer x", "X-Tenant": "1"} }, ""},
		{"max_attempts 1", func(e *store.Endpoint) { e.MaxAttempts = 1 }, ""},
		{"max_attempts 20", func(e *store.Endpoint) { e.MaxAttempts = 20 }, ""},
		{"timeout 1000", func(e *store.Endpoint) { e.TimeoutMS = 1000 }, ""},
		{"timeout 30000", func(e *store.Endpoint) { e.TimeoutMS = 30000 }, ""},
		{"signature none without secret", func(e *store.Endpoint) { e.Signature = sign.None; e.Secret = "" }, ""},

		{"url port 65535", func(e *store.Endpoint) { e.URL = "https://example.com:65535/hooks" }, ""},
		{"name in any script", func(e *store.Endpoint) { e.Name = "Café 日本語 👩‍💻" }, ""},
		{"description on lines", func(e *store.Endpoint) { e.Description = "line one\nline two\tindented" }, ""},

		{"name missing", func(e *store.Endpoint) { e.Name = " " }, "name"},
		{"name with NUL", func(e *store.Endpoint) { e.Name = "a\x00b" }, "name"},
		{"name with right-to-left override", func(e *store.Endpoint) { e.Name = "invoice\u202Efdp.exe" }, "name"},
		{"name with a line break", func(e *store.Endpoint) { e.Name = "a\nb" }, "name"},
		{"description with an escape", func(e *store.Endpoint) { e.Description = "\x1b[2J" }, "description"},
		{"url port 99999", func(e *store.Endpoint) { e.URL = "https://example.com:99999/hooks" }, "url"},
		{"url port 0", func(e *store.Endpoint) { e.URL = "https://example.com:0/hooks" }, "url"},
		{"url missing", func(e *store.Endpoint) { e.URL = "" }, "url"},
		{"url relative", func(e *store.Endpoint) { e.URL = "/hooks" }, "url"},
		{"url without scheme", func(e *store.Endpoint) { e.URL = "example.com/hooks" }, "url"},
		{"url ftp", func(e *store.Endpoint) { e.URL = "ftp://example.com/hooks" }, "url"},
		{"url credentials", func(e *store.Endpoint) { e.URL = "https://user:pass@example.com/hooks" }, "url"},
		{"url user only", func(e *store.Endpoint) { e.URL = "https://user@example.com/hooks" }, "url"},
		{"url fragment", func(e *store.Endpoint) { e.URL = "https://example.com/hooks#x" }, "url"},
		{"url too long", func(e *store.Endpoint) { e.URL = "https://example.com/" + strings.Repeat("a", 2048) }, "url"},
		{"events empty", func(e *store.Endpoint) { e.Events = nil }, "events"},
		{"events empty token", func(e *store.Endpoint) { e.Events = []string{"ok", "a..b"} }, "events[1]"},
		{"events inner wildcard", func(e *store.Endpoint) { e.Events = []string{"post*"} }, "events[0]"},
		{"events leading wildcard", func(e *store.Endpoint) { e.Events = []string{"*.created"} }, "events[0]"},
		{"events NATS wildcard", func(e *store.Endpoint) { e.Events = []string{"post.>"} }, "events[0]"},
		{"method GET", func(e *store.Endpoint) { e.Method = "GET" }, "method"},
		{"method lowercase", func(e *store.Endpoint) { e.Method = "post" }, "method"},
		{"method DELETE", func(e *store.Endpoint) { e.Method = "DELETE" }, "method"},
		{"content_type text", func(e *store.Endpoint) { e.ContentType = "text/plain" }, "content_type"},
		{"content_type with charset", func(e *store.Endpoint) { e.ContentType = "application/json; charset=utf-8" }, "content_type"},
		{"payload_format", func(e *store.Endpoint) { e.PayloadFormat = "xml" }, "payload_format"},
		{"header Host", func(e *store.Endpoint) { e.Headers = map[string]string{"Host": "evil"} }, "headers.Host"},
		{"header Content-Length", func(e *store.Endpoint) { e.Headers = map[string]string{"Content-Length": "1"} }, "headers.Content-Length"},
		{"header webhook-signature", func(e *store.Endpoint) { e.Headers = map[string]string{"webhook-signature": "v1,x"} }, "headers.webhook-signature"},
		{"header Connection", func(e *store.Endpoint) { e.Headers = map[string]string{"Connection": "close"} }, "headers.Connection"},
		{"header Content-Type", func(e *store.Endpoint) { e.Headers = map[string]string{"content-type": "text/plain"} }, "headers.content-type"},
		{"header webhook-id", func(e *store.Endpoint) { e.Headers = map[string]string{"WEBHOOK-ID": "x"} }, "headers.WEBHOOK-ID"},
		{"header Herald-Attempt", func(e *store.Endpoint) { e.Headers = map[string]string{"herald-attempt": "1"} }, "headers.herald-attempt"},
		{"header Transfer-Encoding", func(e *store.Endpoint) { e.Headers = map[string]string{"Transfer-Encoding": "chunked"} }, "headers.Transfer-Encoding"},
		{"header bad name", func(e *store.Endpoint) { e.Headers = map[string]string{"X Bad": "1"} }, "headers.X Bad"},
		{"header value newline", func(e *store.Endpoint) { e.Headers = map[string]string{"X-A": "1\r\nX-B: 2"} }, "headers.X-A"},
		{"too many headers", func(e *store.Endpoint) {
			e.Headers = map[string]string{}
			for i := range 21 {
				e.Headers[fmt.Sprintf("X-H%d", i)] = "v"
			}
		}, "headers"},
		{"max_attempts 0", func(e *store.Endpoint) { e.MaxAttempts = 0 }, "max_attempts"},
		{"max_attempts 21", func(e *store.Endpoint) { e.MaxAttempts = 21 }, "max_attempts"},
		{"timeout_ms 999", func(e *store.Endpoint) { e.TimeoutMS = 999 }, "timeout_ms"},
		{"timeout_ms 30001", func(e *store.Endpoint) { e.TimeoutMS = 30001 }, "timeout_ms"},
		{"rate_limit negative", func(e *store.Endpoint) { e.RateLimit = -1 }, "rate_limit"},
		{"signature unknown", func(e *store.Endpoint) { e.Signature = "md5" }, "signature"},
		{"secret required for standard", func(e *store.Endpoint) { e.Secret = "" }, "secret"},
		{"secret required for github", func(e *store.Endpoint) { e.Signature = sign.GitHub; e.Secret = "" }, "secret"},
		{"secret not base64", func(e *store.Endpoint) { e.Secret = "whsec_!!!" }, "secret"},
		{"secret of another scheme", func(e *store.Endpoint) { e.Signature = sign.Ed25519 }, "secret"},
		{"too much metadata", func(e *store.Endpoint) {
			e.Metadata = map[string]string{}
			for i := range 51 {
				e.Metadata[fmt.Sprint(i)] = "v"
			}
		}, "metadata"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := validEndpoint()
			tc.mod(&e)
			err := e.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if f := errFields(err); !slices.Equal(f, []string{tc.field}) {
				t.Fatalf("Validate() fields = %v (%v), want [%s]", f, err, tc.field)
			}
		})
	}
}

// Every failure is reported in one go, not only the first.
func TestEndpointValidateReportsAll(t *testing.T) {
	e := store.Endpoint{
		Name: "", URL: "ftp://user:pw@example.com/", Events: []string{"a..b", "ok", "*.x"},
		Method: "GET", ContentType: "text/plain", PayloadFormat: "xml", Signature: sign.Standard,
		Headers:     map[string]string{"Host": "h", "Content-Length": "1", "webhook-signature": "s", "Connection": "close"},
		MaxAttempts: 21, TimeoutMS: 999, RateLimit: 100_001,
	}
	want := []string{"content_type", "events[0]", "events[2]", "headers.Connection", "headers.Content-Length", "headers.Host",
		"headers.webhook-signature", "max_attempts", "method", "name", "payload_format", "rate_limit", "secret", "timeout_ms", "url"}
	if got := errFields(e.Validate()); !slices.Equal(got, want) {
		t.Fatalf("fields = %v\nwant     %v", got, want)
	}
	e.MaxAttempts, e.TimeoutMS = 0, 30001
	if got := errFields(e.Validate()); !slices.Contains(got, "max_attempts") || !slices.Contains(got, "timeout_ms") {
		t.Fatalf("fields = %v, want max_attempts and timeout_ms", got)
	}
}

// The store refuses invalid endpoints with all their errors and keeps
// nothing of them; it also refuses invalid updates and keeps the old value.
func TestStoreRefusesInvalidEndpoints(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)
	tn, _ := mustTenant(t, st, "A")
	_, err := st.CreateEndpoint(ctx, tn.ID, store.Endpoint{
		Name: "n", URL: "/relative", Events: []string{}, Method: "GET", ContentType: "text/xml",
		Headers: map[string]string{"Host": "x"}, MaxAttempts: 21, TimeoutMS: 30001,
	})
	want := []string{"content_type", "events", "headers.Host", "max_attempts", "method", "timeout_ms", "url"}
	if got := errFields(err); !slices.Equal(got, want) {
		t.Fatalf("CreateEndpoint fields = %v (%v), want %v", got, err, want)
	}
	// An unknown scheme is a field error too, not a failure to generate
	// its secret.
	_, err = st.CreateEndpoint(ctx, tn.ID, store.Endpoint{Name: "n", URL: "https://example.com/", Events: []string{"*"}, Signature: "md5"})
	if got := errFields(err); !slices.Equal(got, []string{"signature"}) {
		t.Fatalf("CreateEndpoint with signature md5: fields %v (%v), want [signature]", got, err)
	}
	if eps, _ := st.ListEndpoints(ctx, tn.ID); len(eps) != 0 {
		t.Fatalf("invalid endpoint stored: %+v", eps)
	}

	e := mustEndpoint(t, st, tn.ID)
	_, err = st.UpdateEndpoint(ctx, tn.ID, e.ID, func(e *store.Endpoint) error {
		e.URL = "ftp://x/"
		e.Secret = ""
		return nil
	})
	if got := errFields(err); !slices.Equal(got, []string{"secret", "url"}) {
		t.Fatalf("UpdateEndpoint fields = %v (%v), want [secret url]", got, err)
	}
	// The change function's own error is returned as is, and nothing stored.
	boom := errors.New("boom")
	if _, err := st.UpdateEndpoint(ctx, tn.ID, e.ID, func(e *store.Endpoint) error { e.Name = "x"; return boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateEndpoint error = %v, want boom", err)
	}
	got, _ := st.GetEndpoint(ctx, tn.ID, e.ID)
	if got.URL != e.URL || got.Secret != e.Secret || got.Name != e.Name || !got.UpdatedAt.Equal(e.UpdatedAt) {
		t.Fatalf("refused update changed the endpoint: %+v", got)
	}
}

func TestEndpointsAreTenantScoped(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)
	a, _ := mustTenant(t, st, "A")
	b, _ := mustTenant(t, st, "B")
	ea := mustEndpoint(t, st, a.ID)
	eb := mustEndpoint(t, st, b.ID)

	if _, err := st.GetEndpoint(ctx, b.ID, ea.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetEndpoint across tenants error = %v, want ErrNotFound", err)
	}
	if _, err := st.UpdateEndpoint(ctx, b.ID, ea.ID, func(e *store.Endpoint) error { e.Name = "hijacked"; return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateEndpoint across tenants error = %v, want ErrNotFound", err)
	}
	if err := st.DeleteEndpoint(ctx, b.ID, ea.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteEndpoint across tenants error = %v, want ErrNotFound", err)
	}
	if err := st.DisableEndpoint(ctx, b.ID, ea.ID, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DisableEndpoint across tenants error = %v, want ErrNotFound", err)
	}
	// Ids that are not tokens cannot reach other keys through wildcards.
	for _, id := range []string{"*", ">", ea.ID + ".x", a.ID + "." + ea.ID} {
		if _, err := st.GetEndpoint(ctx, b.ID, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetEndpoint(b, %q) error = %v, want ErrNotFound", id, err)
		}
	}
	if eps, err := st.ListEndpoints(ctx, "*"); err != nil || len(eps) != 0 {
		t.Fatalf("ListEndpoints(\"*\") = %d endpoints, %v; want none", len(eps), err)
	}
	got, err := st.GetEndpoint(ctx, a.ID, ea.ID)
	if err != nil || got.Name != ea.Name || !got.UpdatedAt.Equal(ea.UpdatedAt) || !got.Enabled {
		t.Fatalf("endpoint of A after B's attempts = %+v, %v", got, err)
	}
	listA, _ := st.ListEndpoints(ctx, a.ID)
	listB, _ := st.ListEndpoints(ctx, b.ID)
	if len(listA) != 1 || listA[0].ID != ea.ID || len(listB) != 1 || listB[0].ID != eb.ID {
		t.Fatalf("lists: A=%v B=%v", listA, listB)
	}

	// The update cannot move an endpoint or rename its id.
	moved, err := st.UpdateEndpoint(ctx, a.ID, ea.ID, func(e *store.Endpoint) error {
		e.ID, e.TenantID = "ep_other", b.ID
		return nil
	})
	if err != nil || moved.ID != ea.ID || moved.TenantID != a.ID {
		t.Fatalf("UpdateEndpoint changing ids = %+v, %v", moved, err)
	}
	if _, err := st.GetEndpoint(ctx, b.ID, "ep_other"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("endpoint appeared under another tenant: %v", err)
	}
}

func TestUpdateEndpointConcurrentChangesAllApplied(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)
	tn, _ := mustTenant(t, st, "A")
	e := mustEndpoint(t, st, tn.ID)

	const writers, each = 2, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := st.UpdateEndpoint(ctx, tn.ID, e.ID, func(e *store.Endpoint) error {
					if e.Metadata == nil {
						e.Metadata = map[string]string{}
					}
					e.Metadata[fmt.Sprintf("w%d-%02d", w, i)] = "x"
					return nil
				})
				if err != nil {
					errs <- fmt.Errorf("writer %d update %d: %w", w, i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := st.GetEndpoint(ctx, tn.ID, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for w := range writers {
		for i := range each {
			if k := fmt.Sprintf("w%d-%02d", w, i); got.Metadata[k] != "x" {
				missing = append(missing, k)
			}
		}
	}
	if len(missing) > 0 || len(got.Metadata) != writers*each {
		t.Fatalf("lost updates: missing %v; have %d keys", missing, len(got.Metadata))
	}
}

// A change that retries after losing a race must start from the fresh value
// only: nothing of its failed attempt, nor of the caller's input, may mix in,
// or it undoes the concurrent change.
func TestUpdateEndpointRetryStartsFromFreshValue(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)
	tn, _ := mustTenant(t, st, "A")
	e := mustEndpoint(t, st, tn.ID, func(e *store.Endpoint) {
		e.Metadata = map[string]string{"removed": "1", "kept": "1"}
		e.Description = "old description"
	})

	calls := 0
	got, err := st.UpdateEndpoint(ctx, tn.ID, e.ID, func(e *store.Endpoint) error {
		calls++
		if calls == 1 {
			// Another writer gets in between this read and this write.
			if _, err := st.UpdateEndpoint(ctx, tn.ID, e.ID, func(e *store.Endpoint) error {
				delete(e.Metadata, "removed")
				e.Description = ""
				return nil
			}); err != nil {
				return err
			}
		}
		e.Metadata["mine"] = "1"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 2 {
		t.Fatalf("change ran %d times; the concurrent write did not force a retry", calls)
	}
	stored, _ := st.GetEndpoint(ctx, tn.ID, e.ID)
	for _, ep := range []store.Endpoint{got, stored} {
		if _, ok := ep.Metadata["removed"]; ok || ep.Metadata["kept"] != "1" || ep.Metadata["mine"] != "1" || ep.Description != "" {
			t.Fatalf("after retry: metadata %v, description %q; want the concurrent removal kept and mine added", ep.Metadata, ep.Description)
		}
	}
}

func TestDeleteTenantRemovesEverything(t *testing.T) {
	st, js := openStore(t)
	ctx := testCtx(t)
	a, keyA := mustTenant(t, st, "A")
	keyA2, _, err := st.CreateAPIKey(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	ea1 := mustEndpoint(t, st, a.ID)
	ea2 := mustEndpoint(t, st, a.ID)
	b, keyB := mustTenant(t, st, "B")
	eb := mustEndpoint(t, st, b.ID)

	if err := st.DeleteTenant(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{keyA, keyA2} {
		if _, err := st.Authenticate(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("key of deleted tenant authenticates: %v", err)
		}
	}
	if keys, _ := st.APIKeys(ctx, a.ID); len(keys) != 0 {
		t.Fatalf("keys of deleted tenant remain: %+v", keys)
	}
	if eps, _ := st.ListEndpoints(ctx, a.ID); len(eps) != 0 {
		t.Fatalf("endpoints of deleted tenant remain: %+v", eps)
	}
	for _, id := range []string{ea1.ID, ea2.ID} {
		if _, err := st.GetEndpoint(ctx, a.ID, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetEndpoint of deleted tenant error = %v", err)
		}
	}
	// No live key of the bucket mentions the tenant any more.
	kv, err := js.KeyValue(ctx, store.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range lister.Keys() {
		if strings.Contains(k, a.ID) {
			t.Errorf("key %q of the deleted tenant remains", k)
		}
	}
	// The other tenant is untouched.
	if got, err := st.Authenticate(ctx, keyB); err != nil || got != b.ID {
		t.Fatalf("other tenant's key = %q, %v", got, err)
	}
	if got, err := st.GetEndpoint(ctx, b.ID, eb.ID); err != nil || got.ID != eb.ID {
		t.Fatalf("other tenant's endpoint = %+v, %v", got, err)
	}
	if err := st.DeleteTenant(ctx, "tn_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteTenant(missing) error = %v", err)
	}
}

func TestDeleteEndpoint(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)
	tn, _ := mustTenant(t, st, "A")
	e1 := mustEndpoint(t, st, tn.ID)
	e2 := mustEndpoint(t, st, tn.ID)
	if err := st.DeleteEndpoint(ctx, tn.ID, e1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetEndpoint(ctx, tn.ID, e1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetEndpoint after delete error = %v", err)
	}
	if err := st.DeleteEndpoint(ctx, tn.ID, e1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteEndpoint error = %v", err)
	}
	if _, err := st.UpdateEndpoint(ctx, tn.ID, e1.ID, func(*store.Endpoint) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateEndpoint of deleted endpoint error = %v", err)
	}
	if eps, _ := st.ListEndpoints(ctx, tn.ID); len(eps) != 1 || eps[0].ID != e2.ID {
		t.Fatalf("ListEndpoints after delete = %+v", eps)
	}
}

func TestDisableEndpoint(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)
	tn, _ := mustTenant(t, st, "A")
	e := mustEndpoint(t, st, tn.ID, func(e *store.Endpoint) { e.MaxAttempts = 7; e.Headers = map[string]string{"X-A": "1"} })
	const reason = "endpoint answered 410 Gone; endpoint disabled"
	if err := st.DisableEndpoint(ctx, tn.ID, e.ID, reason); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetEndpoint(ctx, tn.ID, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Enabled || got.DisabledReason != reason {
		t.Fatalf("after DisableEndpoint: enabled=%v reason=%q", got.Enabled, got.DisabledReason)
	}
	if got.MaxAttempts != 7 || got.Headers["X-A"] != "1" || got.Secret != e.Secret || got.URL != e.URL || !got.UpdatedAt.After(e.UpdatedAt) && !got.UpdatedAt.Equal(e.UpdatedAt) {
		t.Fatalf("DisableEndpoint changed other fields: %+v", got)
	}
	if err := st.DisableEndpoint(ctx, tn.ID, "ep_missing", reason); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DisableEndpoint(missing) error = %v", err)
	}
}

func TestEndpointKeys(t *testing.T) {
	k := store.EndpointKey("tn_1", "ep_2")
	if tn, ok := store.TenantOfKey(k); !ok || tn != "tn_1" {
		t.Fatalf("TenantOfKey(%q) = %q, %v", k, tn, ok)
	}
	for _, k := range []string{"tenant.tn_1", "apikey.abc", "endpoint.tn_1", ""} {
		if tn, ok := store.TenantOfKey(k); ok {
			t.Errorf("TenantOfKey(%q) = %q, true", k, tn)
		}
	}
}

// CountEndpoints counts every tenant's endpoints by state, deleted ones
// not at all.
func TestCountEndpoints(t *testing.T) {
	st, _ := openStore(t)
	ctx := testCtx(t)
	if n, err := st.CountEndpoints(ctx); err != nil || n != (store.EndpointCounts{}) {
		t.Fatalf("empty store: %+v, %v", n, err)
	}
	a, _ := mustTenant(t, st, "A")
	b, _ := mustTenant(t, st, "B")
	mustEndpoint(t, st, a.ID)
	mustEndpoint(t, st, b.ID)
	mustEndpoint(t, st, b.ID, func(e *store.Endpoint) { e.Paused = true })
	gone := mustEndpoint(t, st, a.ID)
	if err := st.DisableEndpoint(ctx, a.ID, gone.ID, "410"); err != nil {
		t.Fatal(err)
	}
	deleted := mustEndpoint(t, st, b.ID)
	if err := st.DeleteEndpoint(ctx, b.ID, deleted.ID); err != nil {
		t.Fatal(err)
	}
	n, err := st.CountEndpoints(ctx)
	if want := (store.EndpointCounts{Enabled: 2, Paused: 1, Disabled: 1}); err != nil || n != want {
		t.Fatalf("CountEndpoints = %+v, %v; want %+v", n, err, want)
	}
}
