package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
)

// A request refused for its credentials is logged at info, with the prefix
// of the key or token it presented and never the whole of it.
func TestRefusedCredentialsLogged(t *testing.T) {
	var logs testenv.Buffer
	e := newEnv(t, nil, api.WithLogger(zerolog.New(&logs).Level(zerolog.InfoLevel)))
	_, key := e.tenant("refused")
	wrongKey := key[:len(key)-4] + "nope"
	for _, c := range []struct {
		method, path, auth string
		credential, prefix string // prefix "": none logged
	}{
		{"GET", "/v1/endpoints", bearer(wrongKey), "API key", wrongKey[:10]},
		{"GET", "/v1/endpoints", "", "API key", ""},
		{"GET", "/v1/tenants", bearer(adminToken + "x"), "admin token", adminToken[:10]},
		{"GET", "/v1/tenants", bearer("short1"), "admin token", "sho"}, // never more than half
	} {
		if r := e.do(c.method, c.path, c.auth, nil); r.status != 401 {
			t.Fatalf("%s %s with %q: %d, want 401", c.method, c.path, c.auth, r.status)
		}
		var rec map[string]any // the last one: this request's
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "authentication failed" {
				rec = m
			}
		}
		if rec == nil {
			t.Fatalf("%s %s with %q: no \"authentication failed\" record in\n%s", c.method, c.path, c.auth, logs.String())
		}
		if rec["level"] != "info" || rec["credential"] != c.credential || rec["path"] != c.path {
			t.Errorf("%s %s with %q: %v", c.method, c.path, c.auth, rec)
		}
		if got, _ := rec["key_prefix"].(string); got != c.prefix {
			t.Errorf("%s %s with %q: key_prefix %q, want %q", c.method, c.path, c.auth, got, c.prefix)
		}
	}
	if out := logs.String(); strings.Contains(out, wrongKey) || strings.Contains(out, adminToken) {
		t.Errorf("a whole key is logged:\n%s", out)
	}
}
