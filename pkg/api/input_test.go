package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/api"
)

// send sends body as is, with Content-Type ct unless ct is empty.
func (e *env) send(method, path, auth, ct, body string) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(testCtx(e.t), method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	return roundTrip(e.t, e.srv.Client(), req)
}

func roundTrip(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// A method a path is not served with answers 405 with Allow, as a problem
// document; a path served with no method answers 404.
func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", "/v1/endpoints", "GET, HEAD, POST"},
		{"PUT", "/v1/endpoints/ep_x", "GET, HEAD, PATCH, DELETE"},
		{"POST", "/v1/endpoints/ep_x", "GET, HEAD, PATCH, DELETE"},
		{"DELETE", "/v1/events", "POST"},
		{"GET", "/v1/endpoints/ep_x/test", "POST"},
		{"OPTIONS", "/v1/tenants", "GET, HEAD, POST"},
		{"POST", "/openapi.yaml", "GET, HEAD"},
	} {
		r := e.do(c.method, c.path, admin, nil)
		p := r.problem(t, http.StatusMethodNotAllowed)
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
		if !strings.Contains(p.Detail, c.method) || p.Instance != c.path {
			t.Errorf("%s %s: problem %+v", c.method, c.path, p)
		}
	}
	for _, m := range []string{"GET", "PUT"} {
		if r := e.do(m, "/v1/nothing", admin, nil); r.header.Get("Allow") != "" {
			t.Errorf("%s /v1/nothing: Allow %q", m, r.header.Get("Allow"))
		} else {
			r.problem(t, http.StatusNotFound)
		}
	}
}

// A body that says it is not JSON answers 415, before it is decoded; one
// that names no type is taken as JSON.
func TestNonJSONBodiesRefused(t *testing.T) {
	e := newEnv(t, nil)
	_, key := e.tenant("media")
	id := e.endpoint(key, nil)["id"].(string)
	auth := bearer(key)
	event := `{"type":"user.created","data":{"a":1}}`
	for _, c := range []struct {
		method, path, auth, ct, body string
		want                         int
	}{
		{"POST", "/v1/tenants", admin, "text/plain", `{"name":"x"}`, 415},
		{"POST", "/v1/tenants", admin, "application/x-www-form-urlencoded", `{"name":"x"}`, 415},
		{"POST", "/v1/tenants", admin, "not a media type", `{"name":"x"}`, 415},
		{"PATCH", "/v1/tenants/tn_x", admin, "text/plain", `{"name":"x"}`, 415},
		{"POST", "/v1/endpoints", auth, "text/plain", `{"name":"x","url":"https://example.com/","events":["*"]}`, 415},
		{"PATCH", "/v1/endpoints/" + id, auth, "text/plain; charset=utf-8", `{"name":"y"}`, 415},
		{"POST", "/v1/events", auth, "text/plain", event, 415},
		{"POST", "/v1/event-types", auth, "application/xml", `{"name":"a.b"}`, 415},
		{"POST", "/v1/endpoints/" + id + "/test", auth, "text/plain", `{}`, 415},
		// An optional body left out has no type to check.
		{"POST", "/v1/endpoints/" + id + "/secret/rotate", auth, "text/plain", ``, 200},
		{"POST", "/v1/tenants", admin, "application/json; charset=utf-8", `{"name":"x"}`, 201},
		{"POST", "/v1/tenants", admin, "application/vnd.example+json", `{"name":"x"}`, 201},
		{"POST", "/v1/tenants", admin, "", `{"name":"x"}`, 201},
		{"POST", "/v1/events", auth, "", event, 202},
		{"POST", "/v1/events", auth, "Application/JSON", event, 202},
	} {
		r := e.send(c.method, c.path, c.auth, c.ct, c.body)
		if c.want != http.StatusUnsupportedMediaType {
			if r.status != c.want {
				t.Errorf("%s %s as %q: %d %s, want %d", c.method, c.path, c.ct, r.status, r.body, c.want)
			}
			continue
		}
		p := r.problem(t, http.StatusUnsupportedMediaType)
		if !strings.Contains(p.Detail, "Content-Type") || !strings.Contains(p.Detail, "application/json") {
			t.Errorf("%s %s as %q: detail %q", c.method, c.path, c.ct, p.Detail)
		}
		if h := map[string]string{"POST": "Accept-Post", "PATCH": "Accept-Patch"}[c.method]; r.header.Get(h) != "application/json" {
			t.Errorf("%s %s as %q: %s %q", c.method, c.path, c.ct, h, r.header.Get(h))
		}
	}
}

// Headers over the API's limit answer 431 with a problem document, as far
// as the HTTP server, configured as pkg/service does, lets them through.
func TestHeadersTooLarge(t *testing.T) {
	srv := httptest.NewUnstartedServer(api.New(nil, nil))
	srv.Config.MaxHeaderBytes = api.ServerMaxHeaderBytes
	srv.Start()
	t.Cleanup(srv.Close)
	get := func(headerBytes int) response {
		req, err := http.NewRequestWithContext(testCtx(t), "GET", srv.URL+"/openapi.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Padding", strings.Repeat("a", headerBytes))
		return roundTrip(t, srv.Client(), req)
	}
	if r := get(api.MaxHeaderBytes - 1024); r.status != http.StatusOK {
		t.Fatalf("headers under the limit: %d %s", r.status, r.body)
	}
	for _, n := range []int{api.MaxHeaderBytes + 1, 3 * api.MaxHeaderBytes} {
		p := get(n).problem(t, http.StatusRequestHeaderFieldsTooLarge)
		if p.Limit != api.MaxHeaderBytes || !strings.Contains(p.Detail, "header") {
			t.Errorf("%d bytes of headers: problem %+v", n, p)
		}
	}
	// Past the server's own limit net/http answers, in plain text: there
	// is no handler to write a problem document.
	if r := get(api.ServerMaxHeaderBytes + 8192); r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers over the server's limit: %d %s", r.status, r.body)
	}
}

// A key sent twice answers 400 naming it, wherever it is; it used to be
// that the last one won.
func TestDuplicateKeysRefused(t *testing.T) {
	e := newEnv(t, nil)
	_, key := e.tenant("dups")
	auth := bearer(key)
	for _, c := range []struct{ method, path, auth, body, want string }{
		{"POST", "/v1/tenants", admin, `{"name":"a","name":"b"}`, `duplicate key "name"`},
		{"POST", "/v1/endpoints", auth, `{"name":"a","url":"https://example.com/","url":"http://10.0.0.1/","events":["*"]}`, `duplicate key "url"`},
		{"POST", "/v1/endpoints", auth, `{"name":"a","url":"https://example.com/","events":["*"],"headers":{"X-A":"1","X-A":"2"}}`, `duplicate key "X-A" in headers`},
		{"POST", "/v1/events", auth, `{"type":"user.created","type":"user.deleted","data":1}`, `duplicate key "type"`},
	} {
		p := e.send(c.method, c.path, c.auth, "application/json", c.body).problem(t, http.StatusBadRequest)
		if !strings.Contains(p.Detail, c.want) {
			t.Errorf("%s %s %s: detail %q, want %q", c.method, c.path, c.body, p.Detail, c.want)
		}
	}
	// An event's data is the producer's: passed on as sent.
	if r := e.send("POST", "/v1/events", auth, "application/json", `{"type":"user.created","data":{"a":1,"a":2}}`); r.status != http.StatusAccepted {
		t.Fatalf("duplicate keys inside data: %d %s", r.status, r.body)
	}
}

// Names and descriptions refuse control and bidirectional control
// characters; URLs refuse ports out of range. Each answer names the field.
func TestTextAndPortRefused(t *testing.T) {
	e := newEnv(t, nil)
	tn, key := e.tenant("text")
	auth := bearer(key)
	id := e.endpoint(key, nil)["id"].(string)
	ep := func(fields map[string]any) map[string]any {
		body := map[string]any{"name": "hook", "url": "https://example.com/hook", "events": []string{"*"}}
		for k, v := range fields {
			body[k] = v
		}
		return body
	}
	for _, c := range []struct {
		method, path, auth string
		body               any
		field              string
	}{
		{"POST", "/v1/tenants", admin, map[string]any{"name": "a\x00b"}, "name"},
		{"POST", "/v1/tenants", admin, map[string]any{"name": "invoice\u202Efdp.exe"}, "name"},
		{"PATCH", "/v1/tenants/" + tn, admin, map[string]any{"name": "x\u2067y"}, "name"},
		{"POST", "/v1/endpoints", auth, ep(map[string]any{"name": "a\x00b"}), "name"},
		{"POST", "/v1/endpoints", auth, ep(map[string]any{"name": "gnp.\u202Eexe"}), "name"},
		{"POST", "/v1/endpoints", auth, ep(map[string]any{"description": "\x1b[2Jcleared"}), "description"},
		{"POST", "/v1/endpoints", auth, ep(map[string]any{"url": "https://example.com:99999/hook"}), "url"},
		{"PATCH", "/v1/endpoints/" + id, auth, map[string]any{"url": "https://example.com:0/hook"}, "url"},
		{"POST", "/v1/event-types", auth, map[string]any{"name": "a.b", "description": "nul\x00here"}, "description"},
	} {
		got := e.do(c.method, c.path, c.auth, c.body).problem(t, http.StatusUnprocessableEntity).fields()
		if len(got) != 1 || got[0] != c.field {
			b, _ := json.Marshal(c.body)
			t.Errorf("%s %s %s: fields %v, want [%s]", c.method, c.path, b, got, c.field)
		}
	}
	// Descriptions may have lines; names may be in any script.
	e.endpoint(key, map[string]any{"name": "Café 日本語", "description": "line one\nline two"})
}
