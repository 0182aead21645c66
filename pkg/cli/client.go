package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/version"
)

// connFlags are the flags every API command takes. They may be given
// before the command or after it.
type connFlags struct {
	url, key, profile string
	output            string
	json              bool // --json: the old spelling of --output json
}

// register adds the connection flags to fs. Their defaults are the values
// already parsed, so flags given before the command carry over. --api,
// --key and --json are the spellings herald dlq had first; they still
// work.
func (f *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "api-url", f.url, "the API's address")
	fs.StringVar(&f.url, "api", f.url, "the old spelling of --api-url")
	fs.StringVar(&f.key, "api-key", f.key, "the tenant's API key")
	fs.StringVar(&f.key, "key", f.key, "the old spelling of --api-key")
	fs.StringVar(&f.profile, "profile", f.profile, "a saved profile")
	fs.StringVar(&f.output, "output", f.output, "table or json")
	fs.StringVar(&f.output, "o", f.output, "short for --output")
	fs.BoolVar(&f.json, "json", f.json, "the old spelling of --output json")
}

// asJSON reports whether the output is JSON, and refuses formats it does
// not know.
func (c *cmd) asJSON() (bool, error) {
	switch c.conn.output {
	case "", "table":
		return c.conn.json, nil
	case "json":
		return true, nil
	}
	return false, usagef("--output %q: want table or json", c.conn.output)
}

// client resolves the API and key (see the package doc for the order) and
// returns a client for them.
func (c *cmd) client() (*client, error) {
	var named, current profile // --profile's; HERALD_PROFILE's or the current one
	if c.conn.profile != "" || c.conn.url == "" || c.conn.key == "" {
		pf, path, err := c.loadProfiles()
		if err != nil {
			return nil, err
		}
		var ok bool
		switch {
		case c.conn.profile != "":
			if named, ok = pf.Profiles[c.conn.profile]; !ok {
				return nil, usagef("no profile %q in %s; save one with herald login --profile %s", c.conn.profile, path, c.conn.profile)
			}
		case c.env("HERALD_PROFILE") != "":
			name := c.env("HERALD_PROFILE")
			if current, ok = pf.Profiles[name]; !ok {
				return nil, usagef("no profile %q (HERALD_PROFILE) in %s", name, path)
			}
		default:
			current = pf.Profiles[pf.Current] // none when it was forgotten
		}
	}
	base := firstOf(c.conn.url, named.APIURL, c.env("HERALD_API_URL"), current.APIURL, defaultAPI)
	key := firstOf(c.conn.key, named.APIKey, c.env("HERALD_API_KEY"), current.APIKey)
	if key == "" {
		return nil, usagef("no API key: pass --api-key, set HERALD_API_KEY, or save one with herald login")
	}
	return newClient(base, key), nil
}

// client calls a deployment's public HTTP API with a tenant's API key.
type client struct {
	base, key string
	http      *http.Client
}

func newClient(base, key string) *client {
	return &client{base: strings.TrimRight(base, "/"), key: key, http: &http.Client{Timeout: 60 * time.Second}}
}

// apiError is a problem document (RFC 9457) the API answered with.
type apiError struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, e.Title)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, f := range e.Errors {
		fmt.Fprintf(&b, "; %s %s", f.Field, f.Message)
	}
	return b.String()
}

// maxAnswer bounds what is read of an answer: a DLQ page of large events
// is the largest the API gives.
const maxAnswer = 64 << 20

// do sends a request, in (when not nil) as its JSON body, and returns the
// answer's body. An answer of 300 or more is an *apiError.
func (c *client) do(ctx context.Context, method, path string, in any) ([]byte, error) {
	req, err := c.request(ctx, method, path, in, "application/json")
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return nil, answerError(resp.StatusCode, b)
	}
	return b, nil
}

// request builds an API request with the key, in (when not nil) as its
// JSON body, asking for accept.
func (c *client) request(ctx context.Context, method, path string, in any, accept string) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "herald-cli/"+version.Version)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// answerError is the *apiError of an answer with status and body b.
func answerError(status int, b []byte) error {
	e := &apiError{Status: status}
	if json.Unmarshal(b, e) != nil || e.Title == "" {
		e.Title = http.StatusText(status)
		e.Detail = strings.TrimSpace(string(b))
	}
	e.Status = status
	return e
}

// stream reads the server-sent events at path, calling fn with each
// event's name and data, until ctx ends (nil), the stream ends, or fn
// fails. It has no timeout of its own: a stream is meant to stay open.
func (c *client) stream(ctx context.Context, path string, fn func(event, data string) error) error {
	req, err := c.request(ctx, http.MethodGet, path, nil, "text/event-stream")
	if err != nil {
		return err
	}
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		return answerError(resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	event, data := "message", ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != "" {
				if err := fn(event, data); err != nil {
					return err
				}
			}
			event, data = "message", ""
		case strings.HasPrefix(line, ":"): // a comment: the server is still there
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return fmt.Errorf("GET %s: the stream ended", path)
}

// call is do, with the answer also decoded into out.
func (c *client) call(ctx context.Context, method, path string, in, out any) ([]byte, error) {
	b, err := c.do(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("%s %s: the answer is not what herald expects: %w", method, path, err)
	}
	return b, nil
}

// rawPage is a page of any listing: its items as sent, and the cursor of
// the next page (null on the last).
type rawPage struct {
	Data       []json.RawMessage `json:"data"`
	NextCursor *string           `json:"next_cursor"`
}

// list fetches a listing at path with query q: one page, or with all
// every page, following next_cursor.
func (c *client) list(ctx context.Context, path string, q url.Values, all bool) (rawPage, error) {
	out := rawPage{Data: []json.RawMessage{}}
	if q == nil {
		q = url.Values{}
	}
	for {
		var p rawPage
		u := path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		if _, err := c.call(ctx, http.MethodGet, u, nil, &p); err != nil {
			return out, err
		}
		out.Data = append(out.Data, p.Data...)
		out.NextCursor = p.NextCursor
		if !all || p.NextCursor == nil {
			return out, nil
		}
		q.Set("cursor", *p.NextCursor)
	}
}

// apiPath builds an API path from a literal prefix and segments, each
// escaped: apiPath("/v1/endpoints", id, "test").
func apiPath(first string, rest ...string) string {
	var b strings.Builder
	b.WriteString(first)
	for _, s := range rest {
		b.WriteString("/" + url.PathEscape(s))
	}
	return b.String()
}
