package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/history"
	"github.com/heraldhq/herald/pkg/session"
	"github.com/heraldhq/herald/pkg/sign"
)

// follow opens an attempt stream with key and returns the attempts it
// carries; the stream and the context (20 s) end with the test.
func (e *dqEnv) follow(path, key string) (context.Context, <-chan history.Attempt) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	attempts := make(chan history.Attempt, 8)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var a history.Attempt
				if json.Unmarshal([]byte(data), &a) == nil {
					attempts <- a
				}
			}
		}
		close(attempts)
	}()
	return ctx, attempts
}

// GET /v1/attempts/stream shows each attempt as it is recorded, filtered
// as asked, within a second: `herald tail` depends on it.
func TestAttemptStream(t *testing.T) {
	t.Parallel()
	e := newDQEnv(t, true)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get(sign.HeaderID), "fail") {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hook.Close)
	_, key := e.tenant()
	var ep struct {
		ID string `json:"id"`
	}
	e.must(201, "POST", "/v1/endpoints", key, map[string]any{"name": "s", "url": hook.URL, "events": []string{"*"}, "max_attempts": 1}, &ep)

	// Refusals come at once, as problem documents.
	if status, _, _ := e.call("GET", "/v1/attempts/stream?status=sideways", key, nil, nil); status != http.StatusUnprocessableEntity {
		t.Fatalf("bad status filter: %d, want 422", status)
	}
	if status, _, _ := e.call("GET", "/v1/attempts/stream?endpoint_id=ep_nope", key, nil, nil); status != http.StatusNotFound {
		t.Fatalf("unknown endpoint: %d, want 404", status)
	}
	if status, _, _ := e.call("GET", "/v1/attempts/stream", "", nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("no key: %d, want 401", status)
	}

	ctx, attempts := e.follow("/v1/attempts/stream?status=failed&endpoint_id="+ep.ID, key)

	// One success (filtered out: status=failed), then one failure.
	e.must(202, "POST", "/v1/events", key, map[string]any{"id": "ok-1", "type": "post.published", "data": map[string]any{}}, nil)
	e.must(202, "POST", "/v1/events", key, map[string]any{"id": "fail-1", "type": "post.fail", "data": map[string]any{}}, nil)
	select {
	case a, ok := <-attempts:
		if !ok {
			t.Fatal("the stream ended")
		}
		if a.EventID != "fail-1" || a.Status != history.StatusFailed || a.EndpointID != ep.ID || a.ResponseStatus != 500 || a.Number != 1 {
			t.Fatalf("streamed %+v, want fail-1's failed attempt 1 with 500", a)
		}
	case <-ctx.Done():
		t.Fatal("no attempt streamed")
	}
}

// A portal session's attempt stream carries its endpoints' attempts only.
func TestAttemptStreamPortalScope(t *testing.T) {
	t.Parallel()
	signer := portalSigner(t, 11)
	e := newDQEnv(t, true, api.WithSessions(signer))
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(hook.Close)
	tenant, key := e.tenant()
	var posts, members struct {
		ID string `json:"id"`
	}
	e.must(201, "POST", "/v1/endpoints", key, map[string]any{"name": "p", "url": hook.URL, "events": []string{"post.*"}}, &posts)
	e.must(201, "POST", "/v1/endpoints", key, map[string]any{"name": "m", "url": hook.URL, "events": []string{"member.*"}}, &members)
	tok, _, err := signer.Sign(session.Claims{Tenant: tenant, Endpoints: []string{posts.ID}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _ := e.call("GET", "/v1/attempts/stream?endpoint_id="+members.ID, tok, nil, nil); status != http.StatusNotFound {
		t.Fatalf("another endpoint's stream: %d, want 404", status)
	}
	ctx, attempts := e.follow("/v1/attempts/stream", tok)
	// The other endpoint's attempt first: the stream must skip it.
	e.must(202, "POST", "/v1/events", key, map[string]any{"id": "m-1", "type": "member.added", "data": map[string]any{}}, nil)
	testenv.Eventually(t, 10*time.Second, func() bool {
		var page struct{ Data []history.Attempt }
		status, _, _ := e.call("GET", "/v1/endpoints/"+members.ID+"/attempts", key, nil, &page)
		return status == 200 && len(page.Data) == 1
	}, "m-1's attempt is not recorded")
	e.must(202, "POST", "/v1/events", key, map[string]any{"id": "p-1", "type": "post.published", "data": map[string]any{}}, nil)
	select {
	case a := <-attempts:
		if got := a.EventID + "@" + a.EndpointID; got != "p-1@"+posts.ID {
			t.Fatalf("the session's stream carried %s, want only p-1 at %s", got, posts.ID)
		}
	case <-ctx.Done():
		t.Fatal("no attempt streamed")
	}
}
