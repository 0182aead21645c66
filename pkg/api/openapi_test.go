package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/api"
	"go.yaml.in/yaml/v3"
)

type openAPIDoc struct {
	OpenAPI    string                    `yaml:"openapi"`
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Schemas map[string]map[string]any `yaml:"schemas"`
	} `yaml:"components"`
}

func loadSpec(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) == 0 {
		t.Fatalf("openapi %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
	return doc
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// template normalizes a path for comparison: {any_name} becomes {}.
var paramRE = regexp.MustCompile(`\{[^}]*\}`)

func template(method, path string) string {
	return strings.ToUpper(method) + " " + paramRE.ReplaceAllString(path, "{}")
}

func (d openAPIDoc) operations() map[string]string { // normalized -> path as written
	out := map[string]string{}
	for path, item := range d.Paths {
		for m := range item {
			if slices.Contains(httpMethods, m) {
				out[template(m, path)] = strings.ToUpper(m) + " " + path
			}
		}
	}
	return out
}

// sourceRoutes finds every pattern the package registers, through handle or
// straight on the mux, so that routes added anywhere are held to the spec.
func sourceRoutes(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("*.go")
	re := regexp.MustCompile(`(?:handle|HandleFunc)\("([A-Z]+ /[^"]*)"`)
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			out = append(out, string(m[1]))
		}
	}
	return out
}

func TestOpenAPIIsServedAndCopiedToDocs(t *testing.T) {
	docs, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docs, api.OpenAPI) {
		t.Fatal("docs/openapi.yaml differs from pkg/api/openapi.yaml: edit the latter and run go generate ./pkg/api")
	}
	m := newMgmt(t)
	r := m.call("GET", "/openapi.yaml", "", nil)
	if r.status != 200 || !bytes.Equal(r.body, api.OpenAPI) || r.header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /openapi.yaml: %d %s", r.status, r.header.Get("Content-Type"))
	}
}

// The spec and the handlers cannot drift: every route is described, and
// every described operation is routed.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadSpec(t)
	ops := doc.operations()
	m := newMgmt(t)
	registered := m.api.Routes()
	if len(registered) < 20 {
		t.Fatalf("only %d routes registered", len(registered))
	}
	all := append(slices.Clone(registered), sourceRoutes(t)...)
	known := map[string]bool{}
	for _, p := range all {
		method, path, _ := strings.Cut(p, " ")
		k := template(method, path)
		known[k] = true
		if _, ok := ops[k]; !ok {
			t.Errorf("route %q is not in openapi.yaml", p)
		}
	}
	for k, op := range ops {
		if !known[k] {
			t.Errorf("openapi.yaml describes %q, which no handler serves", op)
		}
	}
	// Each registered operation is routed by the mux: not the catch-all
	// 404, not a 405.
	_, auth := m.tenant("routes")
	for _, p := range registered {
		method, path, _ := strings.Cut(p, " ")
		path = paramRE.ReplaceAllString(path, "x")
		tok := auth
		if strings.HasPrefix(path, "/v1/tenants") {
			tok = mgmtAdmin
		}
		if path == "/v1/attempts/stream" {
			path += "?status=x" // a stream answers at once only when refused
		}
		r := m.call(method, path, tok, nil)
		if r.status == 405 || (r.status == 404 && bytes.Contains(r.body, []byte(`"route not found"`))) {
			t.Errorf("%s %s: %d %s", method, path, r.status, r.body)
		}
	}
}

// schemaRequired checks v against the required properties of schema,
// recursively through $ref, allOf, properties and array items.
func schemaRequired(t *testing.T, doc openAPIDoc, schema map[string]any, v any, at string) {
	t.Helper()
	if ref, ok := schema["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Fatalf("%s: unknown schema %s", at, ref)
		}
		schemaRequired(t, doc, s, v, at)
		return
	}
	for _, sub := range asList(schema["allOf"]) {
		schemaRequired(t, doc, sub.(map[string]any), v, at)
	}
	switch v := v.(type) {
	case map[string]any:
		for _, req := range asList(schema["required"]) {
			if _, ok := v[req.(string)]; !ok {
				t.Errorf("%s: required field %q missing in %v", at, req, v)
			}
		}
		props, _ := schema["properties"].(map[string]any)
		for name, ps := range props {
			if fv, ok := v[name]; ok && fv != nil {
				schemaRequired(t, doc, ps.(map[string]any), fv, at+"."+name)
			}
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for i, it := range v {
				schemaRequired(t, doc, items, it, fmt.Sprintf("%s[%d]", at, i))
			}
		}
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

func responseSchema(t *testing.T, doc openAPIDoc, method, path, status string) map[string]any {
	t.Helper()
	op, ok := doc.Paths[path][strings.ToLower(method)].(map[string]any)
	if !ok {
		t.Fatalf("no %s %s in the spec", method, path)
	}
	resp := op["responses"].(map[string]any)[status].(map[string]any)
	if ref, ok := resp["$ref"].(string); ok {
		var d struct {
			Components struct {
				Responses map[string]map[string]any `yaml:"responses"`
			} `yaml:"components"`
		}
		_ = yaml.Unmarshal(api.OpenAPI, &d)
		resp = d.Components.Responses[strings.TrimPrefix(ref, "#/components/responses/")]
	}
	for _, ct := range []string{"application/json", "application/problem+json"} {
		if c, ok := resp["content"].(map[string]any)[ct]; ok {
			return c.(map[string]any)["schema"].(map[string]any)
		}
	}
	t.Fatalf("%s %s %s has no JSON schema", method, path, status)
	return nil
}

// Answers carry what the spec says they must.
func TestOpenAPIResponsesHaveRequiredFields(t *testing.T) {
	doc := loadSpec(t)
	m := newMgmt(t)
	check := func(method, specPath, status string, r reply) {
		t.Helper()
		var v any
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatalf("%s %s: %v", method, specPath, err)
		}
		if fmt.Sprint(r.status) != status {
			t.Fatalf("%s %s: status %d, want %s: %s", method, specPath, r.status, status, r.body)
		}
		schemaRequired(t, doc, responseSchema(t, doc, method, specPath, status), v, method+" "+specPath)
	}
	tr := m.call("POST", "/v1/tenants", mgmtAdmin, map[string]any{"name": "spec"})
	check("POST", "/v1/tenants", "201", tr)
	var tn map[string]any
	_ = json.Unmarshal(tr.body, &tn)
	auth := "Bearer " + tn["api_key"].(string)
	check("GET", "/v1/tenants", "200", m.call("GET", "/v1/tenants", mgmtAdmin, nil))
	check("POST", "/v1/tenants/{tenant_id}/keys", "201", m.call("POST", "/v1/tenants/"+tn["id"].(string)+"/keys", mgmtAdmin, nil))
	check("GET", "/v1/tenants/{tenant_id}/keys", "200", m.call("GET", "/v1/tenants/"+tn["id"].(string)+"/keys", mgmtAdmin, nil))
	er := m.call("POST", "/v1/endpoints", auth, map[string]any{"name": "n", "url": m.rcv.URL, "events": []string{"*"}})
	check("POST", "/v1/endpoints", "201", er)
	var ep map[string]any
	_ = json.Unmarshal(er.body, &ep)
	id := ep["id"].(string)
	check("GET", "/v1/endpoints", "200", m.call("GET", "/v1/endpoints", auth, nil))
	check("GET", "/v1/endpoints/{endpoint_id}/secret", "200", m.call("GET", "/v1/endpoints/"+id+"/secret", auth, nil))
	check("POST", "/v1/endpoints/{endpoint_id}/secret/rotate", "200", m.call("POST", "/v1/endpoints/"+id+"/secret/rotate", auth, nil))
	check("POST", "/v1/endpoints/{endpoint_id}/test", "200", m.call("POST", "/v1/endpoints/"+id+"/test", auth, nil))
	check("POST", "/v1/event-types", "201", m.call("POST", "/v1/event-types", auth, map[string]any{"name": "a.b"}))
	check("GET", "/v1/event-types", "200", m.call("GET", "/v1/event-types", auth, nil))
	check("POST", "/v1/events", "202", m.call("POST", "/v1/events", auth, map[string]any{"type": "a.b", "id": "spec-1", "data": 1}))
	var attempts reply
	m.waitFor(func() bool {
		attempts = m.call("GET", "/v1/endpoints/"+id+"/attempts", auth, nil)
		return bytes.Contains(attempts.body, []byte(`"test":true`))
	})
	check("GET", "/v1/endpoints/{endpoint_id}/attempts", "200", attempts)
	var ev reply
	m.waitFor(func() bool { ev = m.call("GET", "/v1/events/spec-1", auth, nil); return ev.status == 200 })
	check("GET", "/v1/events/{event_id}", "200", ev)
	check("POST", "/v1/endpoints", "422", m.call("POST", "/v1/endpoints", auth, map[string]any{"url": "nope"}))
	check("GET", "/v1/endpoints/{endpoint_id}", "404", m.call("GET", "/v1/endpoints/ep_nope", auth, nil))
}
