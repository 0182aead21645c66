package apitest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/heraldhq/herald/pkg/api"
)

// The description loads in kin-openapi and is valid by its rules; the copy
// in docs/ is the same text (pkg/api's tests keep them equal), and loads
// as well.
func TestDescriptionLoads(t *testing.T) {
	if _, err := NewValidator(api.OpenAPI); err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile("../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewValidator(docs); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if _, err := NewValidator([]byte("openapi: 3.1.0\ninfo: {title: x, version: 1, description: a, b}\npaths: {}\n")); err == nil {
		t.Fatal("a description with a stray key (an unquoted comma in a flow mapping) loaded")
	}
}

// answer is what the fake API answers one request with.
type answer struct {
	status int
	ct     string
	body   string
}

// TestTransportChecksExchanges: every exchange is checked; a mismatch is
// reported, naming the request, and the answer is handed on as it came.
func TestTransportChecksExchanges(t *testing.T) {
	v, err := NewValidator(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	problem := func(status int) answer {
		return answer{status, "application/problem+json", `{"type":"about:blank","title":"x","status":` + strconv.Itoa(status) + `}`}
	}
	tenant := `{"id":"tn_1","name":"x","api_key":"hk_x","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`
	for _, c := range []struct {
		name               string
		method, path, body string
		token              string
		answer             answer
		want               string // part of the report; "" for none
	}{
		{"described exchange", "POST", "/v1/tenants", `{"name":"x"}`, "t", answer{201, "application/json", tenant}, ""},
		{"refused request refused", "POST", "/v1/tenants", `{"nam":"x"}`, "t", problem(400), ""},
		{"no token, 401", "GET", "/v1/tenants", "", "", problem(401), ""},
		{"spec without auth", "GET", "/openapi.yaml", "", "", answer{200, "application/yaml", "openapi: 3.1.0"}, ""},
		{"route the description lacks", "GET", "/v1/nothing", "", "t", problem(404), "no such operation"},
		{"method the description lacks", "PUT", "/v1/tenants", `{}`, "t", problem(405), "no such operation"},
		{"refused request accepted", "POST", "/v1/tenants", `{"nam":"x"}`, "t", answer{201, "application/json", tenant}, "refuses the request, the API answered 201"},
		{"no token, accepted", "GET", "/v1/tenants", "", "", answer{200, "application/json", `{"data":[],"next_cursor":null}`}, "refuses the request"},
		{"answer missing a required field", "POST", "/v1/tenants", `{"name":"x"}`, "t", answer{201, "application/json", `{"id":"tn_1"}`}, "does not match"},
		{"status not listed", "POST", "/v1/tenants", `{"name":"x"}`, "t", problem(418), "does not match"},
		{"problem as plain text", "POST", "/v1/tenants", `{"nam":"x"}`, "t", answer{400, "text/plain", "bad"}, "does not match"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", c.answer.ct)
				w.WriteHeader(c.answer.status)
				_, _ = w.Write([]byte(c.answer.body))
			}))
			defer srv.Close()
			var mu sync.Mutex
			var reports []string
			cl := New(srv.URL, &http.Client{Transport: v.Transport(nil, func(err error) {
				mu.Lock()
				defer mu.Unlock()
				reports = append(reports, err.Error())
			})})
			var body any
			if c.body != "" {
				body = []byte(c.body)
			}
			status, got, err := cl.Call(context.Background(), c.method, c.path, c.token, body)
			if err != nil || status != c.answer.status || !bytes.Equal(got, []byte(c.answer.body)) {
				t.Fatalf("Call: %d %s %v, want the answer as it came", status, got, err)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case c.want == "" && len(reports) != 0:
				t.Fatalf("reported %q", reports)
			case c.want != "" && (len(reports) != 1 || !strings.Contains(reports[0], c.want) || !strings.Contains(reports[0], c.method+" "+c.path)):
				t.Fatalf("reported %q, want one report with %q naming the request", reports, c.want)
			}
		})
	}
}
