package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
)

func TestEventsAndAttempts(t *testing.T) {
	f := newFixture(t, true)
	var ep endpointJSON
	f.okJSON(&ep, "endpoints", "create", "--name", "posts", "--url", f.hook.URL, "--events", "post.*", "--max-attempts", "2")

	// send: a table line, then JSON; the same id again is a duplicate.
	out := f.ok("events", "send", "--type", "post.published", "--id", "post-1", "--data", `{"title": "Hello"}`)
	if !strings.Contains(out, "Event post-1 stored") {
		t.Fatalf("send: %s", out)
	}
	var sent struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	f.okJSON(&sent, "events", "send", "--type", "post.published", "--id", "post-1", "--data", `{"title": "Hello"}`)
	if sent.ID != "post-1" || !sent.Duplicate {
		t.Fatalf("send again: %+v", sent)
	}
	out = f.ok("events", "send", "--type", "post.published", "--id", "post-1", "--data", `{"title": "Hello"}`)
	if !strings.Contains(out, "duplicate") {
		t.Fatalf("send again, table: %s", out)
	}
	// Data from a file and from stdin; an id made by Herald.
	file := filepath.Join(t.TempDir(), "data.json")
	if err := os.WriteFile(file, []byte(`{"title": "From a file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.okJSON(&sent, "events", "send", "--type", "post.deleted", "--data-file", file, "--endpoint", ep.ID)
	if !strings.HasPrefix(sent.ID, "evt_") || sent.Duplicate {
		t.Fatalf("send --data-file: %+v", sent)
	}
	code, out, errs := f.runIn(nil, `"just a string"`, append([]string{"events", "send", "--type", "post.draft", "--id", "post-2", "--data-file", "-"}, f.conn()...)...)
	if code != 0 || !strings.Contains(out, "post-2") {
		t.Fatalf("send --data-file -: %d %s %s", code, out, errs)
	}

	// get: delivered to the endpoint, as a table and as JSON.
	var ev struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		Data       json.RawMessage `json:"data"`
		Deliveries []struct {
			EndpointID string `json:"endpoint_id"`
			State      string `json:"state"`
		} `json:"deliveries"`
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		code, out, _ := f.run(nil, append([]string{"events", "get", "post-1", "-o", "json"}, f.conn()...)...)
		return code == 0 && json.Unmarshal([]byte(out), &ev) == nil && len(ev.Deliveries) == 1 && ev.Deliveries[0].State == "delivered"
	}, "post-1 was not delivered")
	if ev.ID != "post-1" || ev.Type != "post.published" || ev.Deliveries[0].EndpointID != ep.ID || !strings.Contains(string(ev.Data), "Hello") {
		t.Fatalf("events get --output json: %+v", ev)
	}
	out = f.ok("events", "get", "post-1")
	fits(t, out)
	for _, want := range []string{"post.published", `{"title":"Hello"}`, "ENDPOINT", ep.ID, "delivered", "200"} {
		if !strings.Contains(out, want) {
			t.Fatalf("events get printed no %q:\n%s", want, out)
		}
	}

	// attempts: one failing event, then the failed ones alone.
	f.failing.Store(true)
	f.ok("events", "send", "--type", "post.updated", "--id", "post-3", "--data", `{}`)
	testenv.Eventually(t, 10*time.Second, func() bool {
		code, out, _ := f.run(nil, append([]string{"events", "get", "post-3", "-o", "json"}, f.conn()...)...)
		return code == 0 && json.Unmarshal([]byte(out), &ev) == nil && len(ev.Deliveries) == 1 && ev.Deliveries[0].State == "dead"
	}, "post-3 was not dead-lettered")
	f.failing.Store(false)
	out = f.ok("attempts", "list", "--endpoint", ep.ID, "--status", "failed")
	fits(t, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "AGE") || !strings.Contains(lines[1], "post-3") || !strings.Contains(lines[1], "500") || strings.Contains(out, "post-1") {
		t.Fatalf("attempts list --status failed:\n%s", out)
	}
	var page struct {
		Data []struct {
			EventID string `json:"event_id"`
			Status  string `json:"status"`
		} `json:"data"`
		NextCursor *string `json:"next_cursor"`
	}
	f.okJSON(&page, "attempts", "list", "--endpoint", ep.ID, "--status", "succeeded")
	if len(page.Data) == 0 {
		t.Fatal("no succeeded attempts")
	}
	for _, a := range page.Data {
		if a.Status != "succeeded" || a.EventID == "post-3" {
			t.Fatalf("attempts list --status succeeded: %+v", page.Data)
		}
	}
	f.okJSON(&page, "attempts", "list", "--endpoint", ep.ID, "--limit", "1")
	if len(page.Data) != 1 || page.NextCursor == nil {
		t.Fatalf("attempts list --limit 1: %+v", page)
	}
	all := len(page.Data)
	f.okJSON(&page, "attempts", "list", "--endpoint", ep.ID, "--limit", "1", "--all")
	if len(page.Data) <= all || page.NextCursor != nil {
		t.Fatalf("attempts list --all: %+v", page)
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"events", "send", "--data", "{}"}, 2, "--type is required"},
		{[]string{"events", "send", "--type", "a.b"}, 2, "--data or --data-file"},
		{[]string{"events", "send", "--type", "a.b", "--data", "{"}, 2, "not JSON"},
		{[]string{"events", "send", "--type", "a b", "--data", "{}"}, 1, "422"},
		{[]string{"events", "get", "nope"}, 1, "404"},
		{[]string{"events", "get"}, 2, "missing ID"},
		{[]string{"attempts", "list"}, 2, "--endpoint is required"},
		{[]string{"attempts", "list", "--endpoint", ep.ID, "--status", "maybe"}, 1, "status"},
		{[]string{"attempts", "list", "--endpoint", "ep_nope"}, 1, "404"},
	} {
		code, out, errs := f.run(nil, append(c.args, f.conn()...)...)
		if code != c.code || !strings.Contains(out+errs, c.msg) {
			t.Errorf("%v: exit %d, output %q %q; want exit %d mentioning %q", c.args, code, out, errs, c.code, c.msg)
		}
	}
}
