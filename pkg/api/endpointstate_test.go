package api_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/hold"
	"github.com/heraldhq/herald/pkg/sign"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// heldBacklogs reads backlogs from a hold.Store made once the env's
// JetStream exists.
type heldBacklogs struct{ h *hold.Store }

func (b *heldBacklogs) Backlog(ctx context.Context, tenant, endpoint string) (hold.Backlog, error) {
	return b.h.Backlog(ctx, tenant, endpoint)
}

func (b *heldBacklogs) Backlogs(ctx context.Context, tenant string, endpoints ...string) (map[string]hold.Backlog, error) {
	return b.h.Backlogs(ctx, tenant, endpoints...)
}

func TestEndpointStatus(t *testing.T) {
	e := newEnv(t, nil)
	tn, key := e.tenant("states")
	auth := bearer(key)
	ep := e.endpoint(key, nil)
	id := ep["id"].(string)
	path := "/v1/endpoints/" + id
	if ep["status"] != "active" || ep["enabled"] != true {
		t.Fatalf("new endpoint: status %v enabled %v, want active true", ep["status"], ep["enabled"])
	}
	if p := e.endpoint(key, map[string]any{"status": "paused"}); p["status"] != "paused" || p["enabled"] != true {
		t.Fatalf("created paused: status %v enabled %v", p["status"], p["enabled"])
	}

	// Each step: the PATCH body, then the status and enabled it leaves.
	for _, step := range []struct {
		body    string
		status  string
		enabled bool
	}{
		{`{"paused":true}`, "paused", true},
		{`{"enabled":true,"name":"form resent"}`, "paused", true}, // enabled:true does not resume
		{`{"paused":false}`, "active", true},
		{`{"status":"disabled"}`, "disabled", false},
		{`{"paused":false}`, "disabled", false}, // only leaves a pause
		{`{"enabled":true,"paused":false}`, "active", true},
		{`{"enabled":false}`, "disabled", false},
		{`{"paused":true}`, "paused", true}, // pausing a disabled endpoint holds from now on
		{`{"status":"active","enabled":true,"paused":false}`, "active", true},
	} {
		r := e.do("PATCH", path, auth, step.body)
		m := r.json(t)
		if r.status != http.StatusOK || m["status"] != step.status || m["enabled"] != step.enabled {
			t.Fatalf("PATCH %s: %d status %v enabled %v, want %s %v", step.body, r.status, m["status"], m["enabled"], step.status, step.enabled)
		}
		if g := e.do("GET", path, auth, nil).json(t); g["status"] != step.status {
			t.Fatalf("GET after PATCH %s: status %v", step.body, g["status"])
		}
	}

	// Disabled by Herald (a 410): the reason shows; any way back clears it.
	if err := e.st.DisableEndpoint(testCtx(t), tn, id, "endpoint answered 410 Gone; endpoint disabled"); err != nil {
		t.Fatal(err)
	}
	if g := e.do("GET", path, auth, nil).json(t); g["status"] != "disabled" || g["disabled_reason"] != "endpoint answered 410 Gone; endpoint disabled" {
		t.Fatalf("after a 410: %v", g)
	}
	if m := e.do("PATCH", path, auth, `{"status":"active"}`).json(t); m["status"] != "active" || m["disabled_reason"] != nil {
		t.Fatalf("re-enabled with status: %v", m)
	}
	if stored, _ := e.st.GetEndpoint(testCtx(t), tn, id); !stored.Enabled || stored.Paused || stored.DisabledReason != "" {
		t.Fatalf("stored: enabled %v paused %v reason %q", stored.Enabled, stored.Paused, stored.DisabledReason)
	}

	// Conflicting or unknown states: 422 naming the fields; nothing changes.
	before := e.do("GET", path, auth, nil).json(t)
	for body, fields := range map[string][]string{
		`{"enabled":false,"paused":true}`:                    {"paused"},
		`{"status":"active","enabled":false}`:                {"enabled"},
		`{"status":"paused","paused":false,"enabled":false}`: {"enabled", "paused"},
		`{"status":"disabled","paused":true,"name":"x"}`:     {"paused"},
		`{"status":"sleeping"}`:                              {"status"},
		`{"status":"Active"}`:                                {"status"},
	} {
		p := e.do("PATCH", path, auth, body).problem(t, http.StatusUnprocessableEntity)
		if got := p.fields(); !slices.Equal(got, fields) {
			t.Errorf("PATCH %s: 422 fields %v, want %v", body, got, fields)
		}
	}
	e.do("PATCH", path, auth, `{"status":1}`).problem(t, http.StatusBadRequest)
	e.do("POST", "/v1/endpoints", auth, map[string]any{"name": "n", "url": "https://example.com/", "events": []string{"*"}, "status": "gone"}).problem(t, http.StatusUnprocessableEntity)
	if now := e.do("GET", path, auth, nil).json(t); mustJSON(t, now) != mustJSON(t, before) {
		t.Fatalf("refused PATCH changed the endpoint:\n%v\n%v", before, now)
	}

	list := e.do("GET", "/v1/endpoints", auth, nil).json(t)["data"].([]any)
	for _, it := range list {
		if m := it.(map[string]any); m["status"] == nil {
			t.Fatalf("listed endpoint without status: %v", m)
		}
	}
}

func TestEndpointBacklog(t *testing.T) {
	b := &heldBacklogs{}
	e := newEnv(t, nil, api.WithBacklogs(b))
	b.h = hold.New(e.js)
	tn, key := e.tenant("backlog")
	auth := bearer(key)
	created := e.endpoint(key, map[string]any{"status": "paused"})
	paused, idle := created["id"].(string), e.endpoint(key, nil)["id"].(string)
	if bl, _ := created["backlog"].(map[string]any); bl == nil || bl["count"] != 0.0 || bl["oldest_at"] != nil {
		t.Fatalf("created endpoint backlog %v, want count 0 and no oldest_at", created["backlog"])
	}
	first := time.Now()
	for _, ev := range []string{"e1", "e2", "e3"} {
		job := &heraldv1.DeliveryJob{Id: event.JobID(tn, ev, paused), TenantId: tn, EndpointId: paused,
			Event: &heraldv1.Event{Id: ev, TenantId: tn, Type: "user.created", Data: []byte(`{}`)}}
		if err := b.h.Hold(testCtx(t), job); err != nil {
			t.Fatal(err)
		}
	}
	g := e.do("GET", "/v1/endpoints/"+paused, auth, nil).json(t)
	bl, _ := g["backlog"].(map[string]any)
	oldest, _ := time.Parse(time.RFC3339Nano, mapString(bl, "oldest_at"))
	if bl == nil || bl["count"] != 3.0 || oldest.Before(first.Add(-time.Second)) || oldest.After(time.Now().Add(time.Second)) {
		t.Fatalf("GET backlog %v, want count 3 and the first hold's time (%v)", g["backlog"], first)
	}
	if bl := e.do("GET", "/v1/endpoints/"+idle, auth, nil).json(t)["backlog"]; mustJSON(t, bl) != `{"count":0}` {
		t.Fatalf("GET backlog of an endpoint with nothing held: %v", bl)
	}
	byID := map[string]string{}
	for _, it := range e.do("GET", "/v1/endpoints", auth, nil).json(t)["data"].([]any) {
		m := it.(map[string]any)
		byID[m["id"].(string)] = mustJSON(t, m["backlog"])
	}
	if byID[idle] != `{"count":0}` || byID[paused] != mustJSON(t, bl) {
		t.Fatalf("listed backlogs %v, want %s for %s and count 0 for %s", byID, mustJSON(t, bl), paused, idle)
	}
	// Without a backlog source (an API process without HELD) the field is
	// left out rather than shown as zero.
	plain := newEnv(t, nil)
	_, k2 := plain.tenant("plain")
	if g := plain.endpoint(k2, nil); g["backlog"] != nil {
		t.Fatalf("backlog without a source: %v", g["backlog"])
	}
}

func mapString(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// TestEndpointSecretsAndHeadersShown: an ed25519 private key never leaves
// Herald, not even on create; symmetric secrets and header values show in
// one endpoint's views only, and listings mask header values.
func TestEndpointSecretsAndHeadersShown(t *testing.T) {
	e := newEnv(t, nil)
	tn, key := e.tenant("secrets")
	auth := bearer(key)

	ed := e.do("POST", "/v1/endpoints", auth, map[string]any{"name": "ed", "url": "https://example.com/h", "events": []string{"*"}, "signature": "ed25519"})
	if ed.status != http.StatusCreated {
		t.Fatalf("create: %d %s", ed.status, ed.body)
	}
	id := ed.json(t)["id"].(string)
	stored, err := e.st.GetEndpoint(testCtx(t), tn, id)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.PublicKey(stored.Secret)
	if err != nil || !strings.HasPrefix(stored.Secret, sign.PrivateKeyPrefix) {
		t.Fatalf("stored key %.8s...: %v", stored.Secret, err)
	}
	private := strings.TrimPrefix(stored.Secret, sign.PrivateKeyPrefix)
	for what, r := range map[string]response{
		"create":   ed,
		"get":      e.do("GET", "/v1/endpoints/"+id, auth, nil),
		"list":     e.do("GET", "/v1/endpoints", auth, nil),
		"patch":    e.do("PATCH", "/v1/endpoints/"+id, auth, `{"name":"ed2"}`),
		"secret":   e.do("GET", "/v1/endpoints/"+id+"/secret", auth, nil),
		"rotate":   e.do("POST", "/v1/endpoints/"+id+"/secret/rotate", auth, nil),
		"secret 2": e.do("GET", "/v1/endpoints/"+id+"/secret", auth, nil),
	} {
		if r.status != http.StatusOK && r.status != http.StatusCreated {
			t.Fatalf("%s: %d %s", what, r.status, r.body)
		}
		if bytes.Contains(r.body, []byte(sign.PrivateKeyPrefix)) || bytes.Contains(r.body, []byte(private[:16])) || bytes.Contains(r.body, []byte(`"secret"`)) {
			t.Errorf("%s shows the private key or a secret field: %s", what, r.body)
		}
		if !bytes.Contains(r.body, []byte(`"public_key":"whpk_`)) {
			t.Errorf("%s does not show the public key: %s", what, r.body)
		}
	}
	if got := e.do("GET", "/v1/endpoints/"+id, auth, nil).json(t)["public_key"]; got == pub {
		t.Fatal("public key unchanged by the rotation")
	}
	rotated, _ := e.st.GetEndpoint(testCtx(t), tn, id)
	if want, _ := sign.PublicKey(rotated.Secret); e.do("GET", "/v1/endpoints/"+id, auth, nil).json(t)["public_key"] != want {
		t.Fatal("public key shown is not the stored key's")
	}

	// Symmetric secrets and header values: one endpoint's views show them,
	// listings do not.
	long, short := "Bearer abcdefghijklmnopqrstuvwxyz", "k-123"
	hm := e.endpoint(key, map[string]any{"headers": map[string]string{"Authorization": long, "X-Key": short}})
	hid, secret := hm["id"].(string), hm["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || mustJSON(t, hm["headers"]) != mustJSON(t, map[string]string{"Authorization": long, "X-Key": short}) {
		t.Fatalf("created: secret %q headers %v", secret, hm["headers"])
	}
	if g := e.do("GET", "/v1/endpoints/"+hid, auth, nil).json(t); g["secret"] != secret || g["headers"].(map[string]any)["Authorization"] != long {
		t.Fatalf("GET one: secret %v headers %v", g["secret"], g["headers"])
	}
	list := e.do("GET", "/v1/endpoints", auth, nil)
	if bytes.Contains(list.body, []byte(secret)) || bytes.Contains(list.body, []byte("abcdefghijklmnop")) || bytes.Contains(list.body, []byte(short)) {
		t.Fatalf("listing leaks a secret or a header value: %s", list.body)
	}
	var listed map[string]any
	for _, it := range list.json(t)["data"].([]any) {
		if m := it.(map[string]any); m["id"] == hid {
			listed = m
		}
	}
	if h := mustJSON(t, listed["headers"]); h != `{"Authorization":"Bear…(masked)","X-Key":"********"}` {
		t.Fatalf("listed headers %s, want names kept and values masked", h)
	}
	// A listing's masked values sent back would overwrite the real ones.
	p := e.do("PATCH", "/v1/endpoints/"+hid, auth, map[string]any{"headers": map[string]string{"Authorization": "Bear…(masked)", "X-Key": "********"}}).
		problem(t, http.StatusUnprocessableEntity)
	if f := p.fields(); !slices.Equal(f, []string{"headers.Authorization", "headers.X-Key"}) {
		t.Fatalf("422 fields %v", f)
	}
	if s, _ := e.st.GetEndpoint(testCtx(t), tn, hid); s.Headers["Authorization"] != long || s.Headers["X-Key"] != short {
		t.Fatalf("stored headers after the refused PATCH: %v", s.Headers)
	}
}
