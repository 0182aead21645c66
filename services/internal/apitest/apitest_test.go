package apitest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// seen is one request as the test server got it.
type seen struct {
	Method, Path, Auth, ContentType, Body string
}

// echo answers every request with 200 and the request as JSON.
func echo(t *testing.T) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)})
	}))
	t.Cleanup(srv.Close)
	return New(srv.URL, nil)
}

func TestCallBodies(t *testing.T) {
	c := echo(t)
	for _, tc := range []struct {
		name     string
		body     any
		want, ct string
	}{
		{"nil", nil, "", ""},
		{"bytes as is", []byte(`{"a": 1}`), `{"a": 1}`, "application/json"},
		{"raw message as is", json.RawMessage(`not json`), `not json`, "application/json"},
		{"value as JSON", map[string]int{"a": 1}, `{"a":1}`, "application/json"},
		{"string as a JSON string", `{"a":1}`, `"{\"a\":1}"`, "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b, err := c.Call(context.Background(), "POST", "/v1/x?y=1", "tok", tc.body)
			if err != nil || status != http.StatusOK {
				t.Fatalf("status %d, err %v", status, err)
			}
			var got seen
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			want := seen{"POST", "/v1/x?y=1", "Bearer tok", tc.ct, tc.want}
			if got != want {
				t.Fatalf("server saw %+v, want %+v", got, want)
			}
		})
	}
}

func TestCallNoToken(t *testing.T) {
	c := echo(t)
	var got seen
	c.Must(t, "GET", "/v1/tenants", "", nil, http.StatusOK, &got)
	if got.Auth != "" {
		t.Fatalf("Authorization %q sent without a token", got.Auth)
	}
}

func TestCallEncodeError(t *testing.T) {
	_, _, err := echo(t).Call(context.Background(), "POST", "/v1/x", "", make(chan int))
	var ute *json.UnsupportedTypeError
	if !errors.As(err, &ute) || !strings.Contains(err.Error(), "POST /v1/x") {
		t.Fatalf("err %v: want a wrapped *json.UnsupportedTypeError naming the request", err)
	}
}

// recorder is a testing.TB that records Fatalf instead of stopping.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

// must runs c.Must with a recorder and returns its failure message.
func must(c *Client, body any, want int) (msg string) {
	r := &recorder{}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
		msg = r.msg
	}()
	c.Must(r, "POST", "/v1/endpoints", "secret-token", body, want, nil)
	return ""
}

func TestMustMismatch(t *testing.T) {
	msg := must(echo(t), map[string]string{"name": "n"}, http.StatusCreated)
	for _, part := range []string{`POST /v1/endpoints with body {"name":"n"}`, "status 200, want 201", `"Path":"/v1/endpoints"`} {
		if !strings.Contains(msg, part) {
			t.Errorf("message %q lacks %q", msg, part)
		}
	}
	// The echoed answer carries the token; the request's description must not.
	if req, _, _ := strings.Cut(msg, ": status"); strings.Contains(req, "secret-token") {
		t.Errorf("message %q shows the token", msg)
	}
	if msg := must(echo(t), nil, http.StatusOK); msg != "" {
		t.Errorf("matching status failed: %s", msg)
	}
}
