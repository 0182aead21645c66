package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/listen"
	"github.com/heraldhq/herald/pkg/store"
)

// The herald listen routes: a listen endpoint is made with its URL set by
// Herald and kept; no other endpoint may take a listen URL; the stream
// carries each attempt to the CLI and the answer, posted to the API,
// becomes the attempt's outcome; a late or malformed answer is refused
// with a problem document; another tenant sees none of it.
func TestListenRoutes(t *testing.T) {
	// The relay's NATS: request and reply only, as senders and API
	// processes use it.
	nc := testenv.JetStream(t).Conn()
	e := newEnv(t, nil, api.WithListener(listen.NewRelay(nc)))
	_, key := e.tenant("listen")
	_, other := e.tenant("other")

	r := e.do("POST", "/v1/listen", bearer(key), map[string]any{"events": []string{"post.*"}})
	if r.status != http.StatusCreated {
		t.Fatalf("POST /v1/listen: %d %s", r.status, r.body)
	}
	var ep struct {
		ID, URL, Name, Secret string
		Events                []string
	}
	if err := json.Unmarshal(r.body, &ep); err != nil {
		t.Fatal(err)
	}
	if ep.URL != store.ListenURL(ep.ID) || ep.Name != "herald listen" || !strings.HasPrefix(ep.Secret, "whsec_") || !slices.Equal(ep.Events, []string{"post.*"}) {
		t.Fatalf("listen endpoint %+v", ep)
	}
	base := "/v1/endpoints/" + ep.ID

	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		fields             []string
	}{
		{"listen with a url", "POST", "/v1/listen", map[string]any{"url": "https://example.com/"}, 422, []string{"url"}},
		{"endpoint with a listen url", "POST", "/v1/endpoints", map[string]any{"name": "n", "url": "listen://ep_x", "events": []string{"*"}}, 422, []string{"url"}},
		{"listen endpoint given a url", "PATCH", base, map[string]any{"url": "https://example.com/"}, 422, []string{"url"}},
		{"answer without request id", "POST", base + "/listen/responses", map[string]any{"status": 200}, 422, []string{"request_id"}},
		{"answer with a bad status", "POST", base + "/listen/responses", map[string]any{"request_id": "x", "status": 42}, 422, []string{"status"}},
		{"answer with status and error", "POST", base + "/listen/responses", map[string]any{"request_id": "x", "status": 200, "error": "refused"}, 422, []string{"status"}},
		{"answer nobody waits for", "POST", base + "/listen/responses", map[string]any{"request_id": "x", "status": 200}, 410, nil},
	} {
		p := e.do(c.method, c.path, bearer(key), c.body).problem(t, c.status)
		if got := p.fields(); !slices.Equal(got, c.fields) {
			t.Errorf("%s: fields %v, want %v (%+v)", c.name, got, c.fields, p)
		}
	}
	// Not a listen endpoint: 409; another tenant's: 404.
	plain := e.endpoint(key, nil)["id"].(string)
	e.do("GET", "/v1/endpoints/"+plain+"/listen", bearer(key), nil).problem(t, http.StatusConflict)
	e.do("GET", base+"/listen", bearer(other), nil).problem(t, http.StatusNotFound)
	e.do("POST", base+"/listen/responses", bearer(other), map[string]any{"request_id": "x", "status": 200}).problem(t, http.StatusNotFound)

	// The whole loop: stream, attempt, answer.
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+base+"/listen", nil)
	req.Header.Set("Authorization", bearer(key))
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan [2]string, 4)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev, data string
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == "" && ev != "":
				events <- [2]string{ev, data}
				ev, data = "", ""
			case strings.HasPrefix(line, "event: "):
				ev = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = line[len("data: "):]
			}
		}
		close(events)
	}()
	next := func() [2]string {
		select {
		case ev := <-events:
			return ev
		case <-ctx.Done():
			t.Fatal("no event on the stream")
		}
		return [2]string{}
	}
	if ev := next(); ev[0] != "ready" {
		t.Fatalf("first event %v, want ready", ev)
	}
	client := deliver.New(deliver.WithProtocol(store.ListenScheme, listen.NewTransport(nc)))
	out := make(chan deliver.Outcome, 1)
	go func() {
		h := http.Header{}
		h.Set("webhook-id", "evt_loop")
		out <- client.Do(ctx, deliver.Request{URL: ep.URL, Header: h, Body: []byte(`{"a":1}`), Timeout: 10 * time.Second})
	}()
	ev := next()
	var lr listen.Request
	if err := json.Unmarshal([]byte(ev[1]), &lr); ev[0] != "request" || err != nil {
		t.Fatalf("event %v: want a request (%v)", ev, err)
	}
	if lr.Header.Get("webhook-id") != "evt_loop" || string(lr.Body) != `{"a":1}` || lr.Method != "POST" {
		t.Fatalf("relayed %+v", lr)
	}
	if r := e.do("POST", base+"/listen/responses", bearer(key), listen.Response{RequestID: lr.ID, Status: 418, Body: []byte("teapot")}); r.status != http.StatusNoContent {
		t.Fatalf("answer: %d %s", r.status, r.body)
	}
	o := <-out
	if o.Status != 418 || string(o.Body) != "teapot" || o.Class != deliver.ClientError {
		t.Fatalf("outcome %+v: want the CLI's 418", o)
	}
	// Answered once: a second answer is late.
	e.do("POST", base+"/listen/responses", bearer(key), listen.Response{RequestID: lr.ID, Status: 200}).problem(t, http.StatusGone)
}
