package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// endpointJSON is what the tests read of an endpoint printed as JSON.
type endpointJSON struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	URL      string            `json:"url"`
	Events   []string          `json:"events"`
	Status   string            `json:"status"`
	Secret   string            `json:"secret"`
	Headers  map[string]string `json:"headers"`
	Metadata map[string]string `json:"metadata"`
	Rate     int               `json:"rate_limit"`
}

func TestEndpointCommands(t *testing.T) {
	f := newFixture(t, true)

	// create: a table with the secret; then JSON.
	out := f.ok("endpoints", "create", "--url", f.hook.URL, "--events", "post.published,post.deleted",
		"--name", "blog", "--header", "X-Team=cms", "--metadata", "plan=pro")
	fits(t, out)
	for _, want := range []string{"id ", "ep_", f.hook.URL, "post.published, post.deleted", "status ", "active", "whsec_", "header", "X-Team: cms", "plan=pro"} {
		if !strings.Contains(out, want) {
			t.Fatalf("create printed no %q:\n%s", want, out)
		}
	}
	var a endpointJSON
	f.okJSON(&a, "endpoints", "create", "--name", "members", "--url", f.hook.URL, "--events", "member.*", "--rate-limit", "5", "--status", "paused")
	if !strings.HasPrefix(a.ID, "ep_") || a.Status != "paused" || a.Rate != 5 || a.Events[0] != "member.*" || !strings.HasPrefix(a.Secret, "whsec_") {
		t.Fatalf("create --output json: %+v", a)
	}

	// list: both, in id order; a page of one and its cursor; --all.
	out = f.ok("endpoints", "list")
	fits(t, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "blog") || !strings.Contains(lines[1], f.hook.URL) ||
		!strings.Contains(lines[2], a.ID) || !strings.Contains(lines[2], "paused") {
		t.Fatalf("list:\n%s", out)
	}
	first := strings.Fields(lines[1])[0]
	var page struct {
		Data       []endpointJSON `json:"data"`
		NextCursor *string        `json:"next_cursor"`
	}
	f.okJSON(&page, "endpoints", "list", "--limit", "1")
	if len(page.Data) != 1 || page.Data[0].ID != first || page.NextCursor == nil || page.Data[0].Secret != "" {
		t.Fatalf("list --limit 1: %+v", page)
	}
	if page.Data[0].Headers["X-Team"] != "********" {
		t.Fatalf("a listing shows header values masked: %+v", page.Data[0].Headers)
	}
	_, _, errs := f.run(nil, append([]string{"endpoints", "list", "--limit", "1"}, f.conn()...)...)
	if !strings.Contains(errs, "--cursor "+*page.NextCursor) {
		t.Fatalf("list --limit 1 says nothing of the next page: %q", errs)
	}
	f.okJSON(&page, "endpoints", "list", "--limit", "1", "--cursor", *page.NextCursor)
	if len(page.Data) != 1 || page.Data[0].ID != a.ID || page.NextCursor != nil {
		t.Fatalf("the second page: %+v", page)
	}
	f.okJSON(&page, "endpoints", "ls", "--limit", "1", "--all")
	if len(page.Data) != 2 || page.NextCursor != nil {
		t.Fatalf("list --all: %+v", page)
	}

	// get.
	out = f.ok("endpoints", "get", first)
	if !strings.Contains(out, "X-Team: cms") || !strings.Contains(out, "blog") {
		t.Fatalf("get:\n%s", out)
	}
	var b endpointJSON
	f.okJSON(&b, "endpoints", "get", first)
	if b.ID != first || b.Name != "blog" || b.Metadata["plan"] != "pro" {
		t.Fatalf("get --output json: %+v", b)
	}

	// update sends the fields given, nothing else; --file gives a body,
	// the flags override it.
	f.okJSON(&b, "endpoints", "update", first, "--name", "blog 2")
	if b.Name != "blog 2" || b.URL != f.hook.URL || b.Headers["X-Team"] != "cms" || len(b.Events) != 2 {
		t.Fatalf("update --name changed more: %+v", b)
	}
	code, out, errs := f.runIn(nil, `{"name": "from file", "events": ["*"]}`,
		append([]string{"endpoints", "update", first, "--file", "-", "--name", "flag", "-o", "json"}, f.conn()...)...)
	if err := json.Unmarshal([]byte(out), &b); code != 0 || err != nil || b.Name != "flag" || b.Events[0] != "*" {
		t.Fatalf("update --file -: %d %s %s", code, out, errs)
	}
	out = f.ok("endpoints", "update", first, "--description", "the blog's hook")
	if !strings.Contains(out, "the blog's hook") {
		t.Fatalf("update printed:\n%s", out)
	}

	// pause and resume.
	out = f.ok("endpoints", "pause", first)
	if !strings.Contains(out, "paused") {
		t.Fatalf("pause:\n%s", out)
	}
	f.okJSON(&b, "endpoints", "resume", first)
	if b.Status != "active" {
		t.Fatalf("resume: %+v", b)
	}
	f.okJSON(&b, "endpoints", "pause", first)
	if b.Status != "paused" {
		t.Fatalf("pause --output json: %+v", b)
	}
	out = f.ok("endpoints", "resume", first)
	if !strings.Contains(out, "active") {
		t.Fatalf("resume:\n%s", out)
	}

	// test: a 2xx exits 0; a 500 exits 1, with the outcome printed.
	out = f.ok("endpoints", "test", first)
	if !strings.Contains(out, "ok") || !strings.Contains(out, "200") || !strings.Contains(out, "webhook.test") {
		t.Fatalf("test:\n%s", out)
	}
	var res struct {
		OK        bool   `json:"ok"`
		EventType string `json:"event_type"`
		Status    int    `json:"response_status"`
	}
	f.okJSON(&res, "endpoints", "test", first, "--event-type", "post.published", "--data", `{"id": 1}`)
	if !res.OK || res.EventType != "post.published" || res.Status != 200 {
		t.Fatalf("test --output json: %+v", res)
	}
	f.failing.Store(true)
	code, out, errs = f.run(nil, append([]string{"endpoints", "test", first}, f.conn()...)...)
	if code != 1 || !strings.Contains(out, "failed") || !strings.Contains(out, "500") || !strings.Contains(out, "down for maintenance") {
		t.Fatalf("a failed test: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = f.run(nil, append([]string{"endpoints", "test", first, "-o", "json"}, f.conn()...)...)
	if err := json.Unmarshal([]byte(out), &res); code != 1 || err != nil || res.OK || res.Status != 500 {
		t.Fatalf("a failed test, JSON: exit %d %s", code, out)
	}
	f.failing.Store(false)

	// rotate-secret: the new secret; the old one signs for the grace.
	out = f.ok("endpoints", "rotate-secret", first)
	if !strings.Contains(out, "whsec_") || strings.Contains(out, b.Secret) || !strings.Contains(out, "old secret") {
		t.Fatalf("rotate-secret:\n%s", out)
	}
	var sec struct {
		Secret     string `json:"secret"`
		OldSecrets []struct {
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"old_secrets"`
	}
	mine := "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	f.okJSON(&sec, "endpoints", "rotate-secret", first, "--secret", mine, "--grace", "0")
	if sec.Secret != mine || len(sec.OldSecrets) != 1 {
		t.Fatalf("rotate-secret --secret: %+v", sec)
	}

	// delete, as a table and as JSON.
	out = f.ok("endpoints", "delete", first)
	if !strings.Contains(out, "Deleted endpoint "+first) {
		t.Fatalf("delete: %s", out)
	}
	var del struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}
	f.okJSON(&del, "endpoints", "delete", a.ID)
	if del.ID != a.ID || !del.Deleted {
		t.Fatalf("delete --output json: %+v", del)
	}
	out = f.ok("endpoints", "list")
	if strings.TrimSpace(out) != "ID  STATUS  NAME  URL" {
		t.Fatalf("list after deleting both:\n%q", out)
	}
}

func TestEndpointErrors(t *testing.T) {
	f := newFixture(t, false)
	ep := f.endpoint()
	conn := f.conn()
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"endpoints"}, 2, "say which command"},
		{[]string{"endpoints", "frob"}, 2, `unknown command "frob"`},
		{[]string{"endpoints", "get"}, 2, "missing ID"},
		{[]string{"endpoints", "get", "a", "b"}, 2, `unexpected argument "b"`},
		{[]string{"endpoints", "get", "ep_nope"}, 1, "404"},
		{[]string{"endpoints", "delete", "ep_nope"}, 1, "endpoint not found"},
		{[]string{"endpoints", "pause", "ep_nope"}, 1, "404"},
		{[]string{"endpoints", "create", "--name", "n", "--events", "*"}, 1, "url is required"},
		{[]string{"endpoints", "create", "--url", "http://x", "--max-attempts", "many"}, 2, "whole number"},
		{[]string{"endpoints", "create", "--url", "http://x", "--header", "novalue"}, 2, "NAME=VALUE"},
		{[]string{"endpoints", "create", "--file", "/nonexistent.json"}, 2, "nonexistent.json"},
		{[]string{"endpoints", "update", ep}, 2, "nothing to change"},
		{[]string{"endpoints", "update", ep, "--status", "sleeping"}, 1, "status"},
		{[]string{"endpoints", "test", ep, "--data", "{nope"}, 2, "not JSON"},
		{[]string{"endpoints", "rotate-secret", ep, "--grace", "soon"}, 2, "duration"},
	} {
		code, out, errs := f.run(nil, append(c.args, conn...)...)
		if code != c.code || !strings.Contains(out+errs, c.msg) {
			t.Errorf("%v: exit %d, output %q %q; want exit %d mentioning %q", c.args, code, out, errs, c.code, c.msg)
		}
	}
}
