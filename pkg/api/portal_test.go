package api_test

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/session"
)

func portalSigner(t *testing.T, b byte) *session.Signer {
	t.Helper()
	s, err := session.New(bytes.Repeat([]byte{b}, session.KeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openSession opens a portal session with auth and returns its token, as
// the answer's URL carries it.
func (m *mgmt) openSession(auth string, body map[string]any) string {
	m.t.Helper()
	v := m.call("POST", "/v1/portal/sessions", auth, body).ok(m.t, 201)
	u, err := url.Parse(v["url"].(string))
	if err != nil || u.Path != api.PortalPath || v["expires_at"] == nil {
		m.t.Fatalf("session %v", v)
	}
	tok := u.Query().Get("session")
	if !strings.HasPrefix(tok, session.Prefix) {
		m.t.Fatalf("session url %s: no token", u)
	}
	return "Bearer " + tok
}

func ids(v map[string]any) []string {
	var out []string
	for _, it := range v["data"].([]any) {
		out = append(out, it.(map[string]any)["id"].(string))
	}
	slices.Sort(out)
	return out
}

// TestPortalSessionScope: a session token works on the public API within
// its scope and nowhere else: its endpoints only, its event types only,
// read-only when it says so, never the routes a portal has no use for;
// forged, expired, rotated-key and other tenants' tokens are refused.
func TestPortalSessionScope(t *testing.T) {
	signer := portalSigner(t, 7)
	m := newMgmt(t, api.WithSessions(signer))
	tnA, authA := m.tenant("portal a")
	_, authB := m.tenant("portal b")
	posts := m.endpoint(authA, map[string]any{"events": []string{"post.*"}})["id"].(string)
	members := m.endpoint(authA, map[string]any{"events": []string{"member.added"}})["id"].(string)
	everything := m.endpoint(authA, map[string]any{"events": []string{"*"}})["id"].(string)
	otherTenant := m.endpoint(authB, nil)["id"].(string)

	t.Run("endpoints", func(t *testing.T) {
		tok := m.openSession(authA, map[string]any{"endpoint_ids": []string{posts}, "read_only": true, "ttl_seconds": 120})
		if got := ids(m.call("GET", "/v1/endpoints", tok, nil).ok(t, 200)); !slices.Equal(got, []string{posts}) {
			t.Fatalf("session lists %v, want only %s", got, posts)
		}
		m.call("GET", "/v1/endpoints/"+posts, tok, nil).ok(t, 200)
		m.call("GET", "/v1/endpoints/"+members+"/secret", tok, nil).fails(t, 404)
		m.call("GET", "/v1/endpoints/"+members+"/attempts", tok, nil).fails(t, 404)
		m.call("GET", "/v1/endpoints/"+otherTenant, tok, nil).fails(t, 404)
		// read-only: every write is 403, before anything is read
		m.call("PATCH", "/v1/endpoints/"+posts, tok, map[string]any{"paused": true}).fails(t, 403)
		m.call("POST", "/v1/endpoints/"+posts+"/test", tok, nil).fails(t, 403)
		m.call("DELETE", "/v1/endpoints/"+posts, tok, nil).fails(t, 403)
		// routes a session never uses
		m.call("POST", "/v1/events", tok, map[string]any{"type": "post.published", "data": map[string]any{}}).fails(t, 403)
		m.call("POST", "/v1/portal/sessions", tok, nil).fails(t, 403)
		m.call("GET", "/v1/tenants", tok, nil).fails(t, 401)
	})

	t.Run("event types", func(t *testing.T) {
		tok := m.openSession(authA, map[string]any{"event_types": []string{"post.*"}})
		if got := ids(m.call("GET", "/v1/endpoints", tok, nil).ok(t, 200)); !slices.Equal(got, []string{posts}) {
			t.Fatalf("session lists %v, want only %s (subscribed within post.*)", got, posts)
		}
		m.call("GET", "/v1/endpoints/"+everything, tok, nil).fails(t, 404)
		m.call("POST", "/v1/endpoints", tok, map[string]any{"name": "x", "url": m.rcv.URL, "events": []string{"post.x", "member.added", "*"}}).
			fails(t, 422, "events[1]", "events[2]")
		m.call("POST", "/v1/endpoints", tok, map[string]any{"name": "x", "url": m.rcv.URL, "events": []string{"post.published.*"}}).ok(t, 201)
		m.call("PATCH", "/v1/endpoints/"+posts, tok, map[string]any{"events": []string{"*"}}).fails(t, 422, "events[0]")
		m.call("PATCH", "/v1/endpoints/"+posts, tok, map[string]any{"paused": true}).ok(t, 200)
		for _, et := range []string{"post.published", "member.added"} {
			m.call("POST", "/v1/event-types", authA, map[string]any{"name": et, "description": "d"}).ok(t, 201)
		}
		m.call("GET", "/v1/event-types/member.added", tok, nil).fails(t, 404)
		var names []string
		for _, it := range m.call("GET", "/v1/event-types", tok, nil).ok(t, 200)["data"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		if !slices.Equal(names, []string{"post.published"}) {
			t.Fatalf("event types %v", names)
		}
	})

	t.Run("endpoint-limited session creates nothing", func(t *testing.T) {
		tok := m.openSession(authA, map[string]any{"endpoint_ids": []string{posts}})
		m.call("POST", "/v1/endpoints", tok, map[string]any{"name": "x", "url": m.rcv.URL, "events": []string{"post.x"}}).fails(t, 403)
	})

	t.Run("refused tokens", func(t *testing.T) {
		tok := m.openSession(authA, nil)
		m.call("GET", "/v1/endpoints", tok, nil).ok(t, 200)
		// Forged: the payload changed to name tenant B, the signature kept.
		signed, sig, _ := strings.Cut(strings.TrimPrefix(tok, "Bearer "), ".")
		payload, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(signed, session.Prefix))
		forged := session.Prefix + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(tnA), []byte("tn_someone_else"), 1)) + "." + sig
		m.call("GET", "/v1/endpoints", "Bearer "+forged, nil).fails(t, 401)
		expired, _, err := signer.Sign(session.Claims{Tenant: tnA}, time.Now().Add(-2*time.Hour), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		m.call("GET", "/v1/endpoints", "Bearer "+expired, nil).fails(t, 401)
		rotated, _, _ := portalSigner(t, 8).Sign(session.Claims{Tenant: tnA}, time.Now(), time.Hour)
		m.call("GET", "/v1/endpoints", "Bearer "+rotated, nil).fails(t, 401)
		// Another tenant's session sees its own tenant only.
		tokB := m.openSession(authB, nil)
		if got := ids(m.call("GET", "/v1/endpoints", tokB, nil).ok(t, 200)); !slices.Equal(got, []string{otherTenant}) {
			t.Fatalf("tenant B's session lists %v", got)
		}
		m.call("GET", "/v1/endpoints/"+posts, tokB, nil).fails(t, 404)
	})

	t.Run("validation", func(t *testing.T) {
		m.call("POST", "/v1/portal/sessions", authA, map[string]any{
			"ttl_seconds": 5, "endpoint_ids": []string{"ep_nope"}, "event_types": []string{"post.**"},
			"theme":           map[string]any{"name": "a\u202eb", "logo_url": "javascript:alert(1)", "primary_color": "red"},
			"frame_ancestors": []string{"https://ok.example", "https://x.example/path", "*", "https://a.example; script-src *"},
		}).fails(t, 422, "ttl_seconds", "endpoint_ids[0]", "event_types[0]", "theme.name", "theme.logo_url", "theme.primary_color",
			"frame_ancestors[1]", "frame_ancestors[2]", "frame_ancestors[3]")
	})
}

// TestPortalSessionsDisabled: without a signing key, sessions are neither
// opened nor accepted.
func TestPortalSessionsDisabled(t *testing.T) {
	m := newMgmt(t)
	_, auth := m.tenant("no portal")
	m.call("POST", "/v1/portal/sessions", auth, nil).fails(t, 503)
	tok, _, _ := portalSigner(t, 7).Sign(session.Claims{Tenant: "tn_x"}, time.Now(), time.Hour)
	m.call("GET", "/v1/endpoints", "Bearer "+tok, nil).fails(t, 401)
}
