// Package apitest is a client of Herald's management HTTP API for the
// suites that drive Herald from the outside, as an operator or a producer
// would (services/e2e, services/faults). It lives in one place so that
// every suite sends requests the same way (bearer token, JSON content type,
// body encoding) and fails with messages that say enough to debug a run
// from its log alone.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

const (
	// maxAnswer caps how much of an answer is read: the API answers with
	// small JSON documents, and a runaway body must not eat a test's memory.
	maxAnswer = 1 << 20
	// mustTimeout bounds one Must call, so that a hung Herald fails the test
	// with the request named instead of running into the go test timeout.
	mustTimeout = 10 * time.Second
	// shownBody caps how much of a request body a failure message repeats.
	shownBody = 2 << 10
)

// Client is a client of Herald's management HTTP API. It is safe for
// concurrent use, as load producers call it from many goroutines.
type Client struct {
	// Base is the API's base URL (scheme and host, no trailing slash); the
	// paths given to Call and Must are appended to it.
	Base string
	hc   *http.Client
}

// New returns a client of the API at base. hc is the caller's so that each
// suite keeps its own timeouts and connection limits (a load needs more
// connections per host than http.DefaultTransport keeps idle); nil means a
// client with a 10 s timeout.
func New(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{Base: base, hc: hc}
}

// Call sends one request and returns the answer's status and body (at most
// 1 MiB of it). token, when not empty, is sent as "Authorization: Bearer
// token"; an empty token sends the request unauthenticated. body is nil for
// none, []byte or json.RawMessage to send as is (a test that must control
// every byte, or send malformed JSON), and any other value is sent as its
// JSON encoding; a string therefore goes out as a JSON string, so wrap raw
// JSON text in json.RawMessage. A request with a body carries Content-Type:
// application/json.
func (c *Client) Call(ctx context.Context, method, path, token string, body any) (int, []byte, error) {
	raw, err := encode(body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
	}
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// A *url.Error, which already names the method and the URL.
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, out, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	return resp.StatusCode, out, nil
}

// Must sends one request as Call does, from the test goroutine (it stops
// the test with t.Fatalf), within 10 s. It fails the test unless the answer
// has status want, with the request, the status and the answer's body in
// the message, and decodes the answer into out when out is not nil.
func (c *Client) Must(t testing.TB, method, path, token string, body any, want int, out any) {
	t.Helper()
	raw, err := encode(body)
	if err != nil {
		t.Fatalf("%s %s: encode body: %v", method, path, err)
	}
	req := describe(method, path, raw)
	ctx, cancel := context.WithTimeout(context.Background(), mustTimeout)
	defer cancel()
	status, answer, err := c.Call(ctx, method, path, token, raw)
	if err != nil {
		t.Fatalf("%s: %v", req, err)
	}
	if status != want {
		t.Fatalf("%s: status %d, want %d: %s", req, status, want, answer)
	}
	if out != nil {
		if err := json.Unmarshal(answer, out); err != nil {
			t.Fatalf("%s: decode answer %s: %v", req, answer, err)
		}
	}
}

// encode is the bytes Call sends for body, nil for no body.
func encode(body any) ([]byte, error) {
	switch b := body.(type) {
	case nil:
		return nil, nil
	case []byte:
		return b, nil
	case json.RawMessage:
		return b, nil
	default:
		return json.Marshal(b)
	}
}

// describe names a request in failure messages: its method and path, and
// its body (cut short) when it has one, since a 400 is often explained by
// what was sent. The token is left out: it is a credential.
func describe(method, path string, body []byte) string {
	if body == nil {
		return method + " " + path
	}
	if len(body) > shownBody {
		return fmt.Sprintf("%s %s with body %s… (%d bytes)", method, path, body[:shownBody], len(body))
	}
	return fmt.Sprintf("%s %s with body %s", method, path, body)
}
