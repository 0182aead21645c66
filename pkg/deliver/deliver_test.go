package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var bigBody = bytes.Repeat([]byte("0123456789abcdef"), 640) // 10 KiB

// newServer starts an httptest server on 127.0.0.1.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// blockingServer starts a server whose handler runs prelude (if any) and
// then blocks until the test ends. The handler is released before the
// server is closed, so that Close does not wait for it forever.
func blockingServer(t *testing.T, prelude func(http.ResponseWriter)) *httptest.Server {
	release := make(chan struct{})
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if prelude != nil {
			prelude(w)
		}
		<-release
	}))
	t.Cleanup(func() { close(release) })
	return srv
}

func newClient(t *testing.T, opts ...Option) *Client {
	c := New(opts...)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestStatusClasses(t *testing.T) {
	var followed atomic.Int32
	retryDate := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("thanks")) })
	mux.HandleFunc("/accepted", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/target", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/target", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/status/"), "%d", &code)
		if ra := r.URL.Query().Get("ra"); ra != "" {
			if ra == "date" {
				ra = retryDate
			}
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(code)
		io.WriteString(w, "nope")
	})
	srv := newServer(t, mux)
	c := newClient(t)

	tests := []struct {
		path       string
		status     int
		class      Class
		ok         bool
		retryAfter time.Duration // exact, or -1 for "about an hour"
	}{
		{"/ok", 200, Success, true, 0},
		{"/accepted", 202, Success, true, 0},
		{"/moved", 301, Redirect, false, 0},
		{"/status/307", 307, Redirect, false, 0},
		{"/status/400", 400, ClientError, false, 0},
		{"/status/404", 404, ClientError, false, 0},
		{"/status/410", 410, Gone, false, 0},
		{"/status/429?ra=120", 429, RateLimited, false, 120 * time.Second},
		{"/status/429?ra=date", 429, RateLimited, false, -1},
		{"/status/429?ra=junk", 429, RateLimited, false, 0},
		{"/status/429", 429, RateLimited, false, 0},
		{"/status/503?ra=7", 503, ServerError, false, 7 * time.Second},
		{"/status/500?ra=7", 500, ServerError, false, 0}, // Retry-After only counts on 429/503
		{"/status/502", 502, ServerError, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			o := c.Do(t.Context(), Request{URL: srv.URL + tt.path, Timeout: 5 * time.Second})
			if o.Status != tt.status || o.Class != tt.class || o.OK() != tt.ok {
				t.Fatalf("got status %d class %q OK %v (err %q); want %d %q %v", o.Status, o.Class, o.OK(), o.Err, tt.status, tt.class, tt.ok)
			}
			if tt.ok != (o.Err == "") {
				t.Errorf("Err = %q", o.Err)
			}
			if o.Latency <= 0 {
				t.Errorf("Latency = %v", o.Latency)
			}
			switch {
			case tt.retryAfter == -1:
				if o.RetryAfter < 58*time.Minute || o.RetryAfter > time.Hour {
					t.Errorf("RetryAfter = %v, want about 1h", o.RetryAfter)
				}
			case o.RetryAfter != tt.retryAfter:
				t.Errorf("RetryAfter = %v, want %v", o.RetryAfter, tt.retryAfter)
			}
		})
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("redirect target was requested %d times; redirects must not be followed", n)
	}
}

func TestRequestSent(t *testing.T) {
	type seen struct {
		method, ua, secret, body string
		contentLength            int64
	}
	got := make(chan seen, 1)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.UserAgent(), r.Header.Get("X-Secret"), string(b), r.ContentLength}
	}))
	tests := []struct {
		name string
		opts []Option
		req  Request
		want seen
	}{
		{"defaults", nil,
			Request{URL: srv.URL, Body: []byte(`{"a":1}`)},
			seen{"POST", DefaultUserAgent, "", `{"a":1}`, 7}},
		{"custom agent and headers", []Option{WithUserAgent("Herald/1.2")},
			Request{Method: "PUT", URL: srv.URL, Header: http.Header{"X-Secret": {"s"}}},
			seen{"PUT", "Herald/1.2", "s", "", 0}},
		{"request agent wins", []Option{WithUserAgent("Herald/1.2")},
			Request{URL: srv.URL, Header: http.Header{"User-Agent": {"Mine/1"}}},
			seen{"POST", "Mine/1", "", "", 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fmt.Sprint(tt.req.Header)
			o := newClient(t, tt.opts...).Do(t.Context(), tt.req)
			if !o.OK() {
				t.Fatalf("outcome %+v", o)
			}
			if s := <-got; s != tt.want {
				t.Errorf("server saw %+v, want %+v", s, tt.want)
			}
			if after := fmt.Sprint(tt.req.Header); after != before {
				t.Errorf("request header modified: %s -> %s", before, after)
			}
		})
	}
}

func TestBodyKeptAndCapped(t *testing.T) {
	tests := []struct {
		name          string
		body          []byte
		contentLength bool // declare it, rather than stream chunked
		want          []byte
	}{
		{"chunked", bigBody, false, bigBody[:MaxBodyKeep]},
		{"declared length", bigBody, true, bigBody[:MaxBodyKeep]},
		{"short", []byte("bad signature"), true, []byte("bad signature")},
		{"exactly the cap", bigBody[:MaxBodyKeep], true, bigBody[:MaxBodyKeep]},
		{"empty", nil, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.contentLength {
					w.Header().Set("Content-Length", fmt.Sprint(len(tt.body)))
				}
				w.WriteHeader(http.StatusInternalServerError)
				w.Write(tt.body)
			}))
			o := newClient(t).Do(t.Context(), Request{URL: srv.URL})
			if o.Class != ServerError {
				t.Fatalf("class %q, err %q", o.Class, o.Err)
			}
			if !bytes.Equal(o.Body, tt.want) || cap(o.Body) > MaxBodyKeep {
				t.Errorf("kept %d bytes (cap %d), want %d", len(o.Body), cap(o.Body), len(tt.want))
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	srv := blockingServer(t, nil)
	const timeout = 200 * time.Millisecond
	o := newClient(t).Do(t.Context(), Request{URL: srv.URL, Timeout: timeout})
	if o.Class != Timeout || o.Status != 0 {
		t.Fatalf("got class %q status %d err %q; want timeout", o.Class, o.Status, o.Err)
	}
	if o.Latency < timeout || o.Latency > 5*time.Second {
		t.Errorf("Latency = %v, want just over %v", o.Latency, timeout)
	}

	// A caller's shorter deadline is a timeout too.
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if o := newClient(t).Do(ctx, Request{URL: srv.URL, Timeout: time.Minute}); o.Class != Timeout {
		t.Errorf("parent deadline: got class %q err %q", o.Class, o.Err)
	}
}

func TestStalledBodyAfterSuccess(t *testing.T) {
	srv := blockingServer(t, func(w http.ResponseWriter) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
	})
	o := newClient(t).Do(t.Context(), Request{URL: srv.URL, Timeout: 200 * time.Millisecond})
	if o.Class != Success || !o.OK() || string(o.Body) != "partial" {
		t.Fatalf("got %+v; the status alone decides acceptance", o)
	}
	if !strings.Contains(o.Err, "reading response body") {
		t.Errorf("Err = %q, want the body read failure noted", o.Err)
	}
}

func TestTransportFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the expected handshake failures
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)

	plain := newServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))

	tests := []struct {
		name  string
		req   Request
		class Class
	}{
		{"refused", Request{URL: "http://" + closedAddr + "/?token=hunter2"}, Connection},
		{"dns", Request{URL: "http://herald-test.invalid/?token=hunter2"}, DNS},
		{"untrusted certificate", Request{URL: tlsSrv.URL + "/?token=hunter2"}, TLS},
		{"https to plain http", Request{URL: "https://" + strings.TrimPrefix(plain.URL, "http://") + "/?token=hunter2"}, TLS},
		{"bad url", Request{URL: "http://[::1/?token=hunter2"}, RequestError},
		{"no host", Request{URL: "http:///?token=hunter2"}, RequestError},
		{"relative url", Request{URL: "/hook?token=hunter2"}, RequestError},
		{"ftp scheme", Request{URL: "ftp://example.com/?token=hunter2"}, RequestError},
		{"bad method", Request{Method: "NOT A METHOD", URL: plain.URL + "/?token=hunter2"}, RequestError},
		{"bad header value", Request{URL: plain.URL + "/?token=hunter2", Header: http.Header{"X-Secret": {"hunter2\r\nX-Evil: 1"}}}, RequestError},
	}
	c := newClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Timeout = 5 * time.Second
			o := c.Do(t.Context(), tt.req)
			if o.Class != tt.class || o.Status != 0 {
				t.Fatalf("got class %q status %d err %q; want %q", o.Class, o.Status, o.Err, tt.class)
			}
			if o.Err == "" {
				t.Error("Err is empty")
			}
			if strings.Contains(o.Err, "hunter2") {
				t.Errorf("Err %q leaks the URL or a header value", o.Err)
			}
		})
	}
}

func TestBlockedByDialHook(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("blocked request reached the server")
	}))
	var dialed atomic.Int32
	c := newClient(t, WithDialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("dial hook context has no deadline")
		}
		return nil, fmt.Errorf("%w: %s is loopback", ErrBlocked, addr)
	}))
	o := c.Do(t.Context(), Request{URL: srv.URL})
	if o.Class != Blocked || dialed.Load() != 1 {
		t.Fatalf("got class %q err %q after %d dials; want blocked after 1", o.Class, o.Err, dialed.Load())
	}
	if !strings.Contains(o.Err, "loopback") {
		t.Errorf("Err %q lost the hook's reason", o.Err)
	}

	// Any other hook error is an ordinary connection failure.
	c = newClient(t, WithDialContext(func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no route")
	}))
	if o := c.Do(t.Context(), Request{URL: srv.URL}); o.Class != Connection {
		t.Errorf("plain hook error: got class %q err %q, want connection", o.Class, o.Err)
	}
}

// TestConnectionReuse checks the drain limit: a body within it is read to
// the end so that the next attempt reuses the connection; a longer one
// makes the client close the connection.
func TestConnectionReuse(t *testing.T) {
	// bodyServer serves bigBody and reports each connection it sees closed.
	bodyServer := func(t *testing.T) (*httptest.Server, <-chan struct{}) {
		closed := make(chan struct{}, 16)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(bigBody)
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				select {
				case closed <- struct{}{}:
				default:
				}
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		return srv, closed
	}
	deadline := time.Now().Add(10 * time.Second)

	t.Run("within limit", func(t *testing.T) {
		srv, closed := bodyServer(t)
		c := newClient(t)
		var reused atomic.Bool
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused.Store(info.Reused) },
		})
		// The connection returns to the pool asynchronously, so an attempt
		// may race ahead and dial; one reuse proves the body was drained.
		for !reused.Load() {
			if time.Now().After(deadline) {
				t.Fatal("no attempt reused a connection")
			}
			if o := c.Do(ctx, Request{URL: srv.URL}); !o.OK() {
				t.Fatalf("outcome %+v", o)
			}
		}
		if n := len(closed); n != 0 {
			t.Errorf("%d connections closed; drained ones should stay open", n)
		}
	})
	t.Run("beyond limit", func(t *testing.T) {
		srv, closed := bodyServer(t)
		c := newClient(t, WithMaxBodyRead(2<<10))
		if o := c.Do(t.Context(), Request{URL: srv.URL}); !o.OK() {
			t.Fatalf("outcome %+v", o)
		}
		select {
		case <-closed:
		case <-time.After(time.Until(deadline)):
			t.Fatal("connection not closed after an oversized body")
		}
	})
}

func BenchmarkDo(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := New()
	defer c.CloseIdleConnections()
	req := Request{URL: srv.URL, Header: http.Header{"Content-Type": {"application/json"}, "Webhook-Id": {"msg_1"}}, Body: []byte(`{"type":"post.published"}`)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if o := c.Do(context.Background(), req); !o.OK() {
				b.Fatal(o)
			}
		}
	})
}
