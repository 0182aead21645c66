package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to a Herald deployment's dead-letter API with a tenant's API
// key: what the herald dlq commands use.
type Client struct {
	// Base is the API's address, e.g. http://127.0.0.1:8080.
	Base string
	// Key is the tenant's API key (hk_...).
	Key  string
	HTTP *http.Client
}

// APIError is a problem document the API answered with.
type APIError struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (e *APIError) Error() string {
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

// List returns one page of dead letters.
func (c *Client) List(ctx context.Context, q Query) (Page, error) {
	var p Page
	err := c.do(ctx, http.MethodGet, "/v1/dlq?"+q.Values().Encode(), nil, &p)
	return p, err
}

// Get returns one dead letter.
func (c *Client) Get(ctx context.Context, id uint64) (Entry, error) {
	var e Entry
	err := c.do(ctx, http.MethodGet, "/v1/dlq/"+strconv.FormatUint(id, 10), nil, &e)
	return e, err
}

// Replay starts a replay.
func (c *Client) Replay(ctx context.Context, in ReplayInput) (Replay, error) {
	var r Replay
	err := c.do(ctx, http.MethodPost, "/v1/dlq/replay", in, &r)
	return r, err
}

// ReplayStatus returns a replay's progress.
func (c *Client) ReplayStatus(ctx context.Context, id string) (Replay, error) {
	var r Replay
	err := c.do(ctx, http.MethodGet, "/v1/dlq/replays/"+url.PathEscape(id), nil, &r)
	return r, err
}

// Recover replays an endpoint's dead letters since a time.
func (c *Client) Recover(ctx context.Context, endpointID string, in RecoverInput) (Replay, error) {
	var r Replay
	err := c.do(ctx, http.MethodPost, "/v1/endpoints/"+url.PathEscape(endpointID)+"/recover", in, &r)
	return r, err
}

// Resend sends an event again to one endpoint, or all that want it.
func (c *Client) Resend(ctx context.Context, eventID, endpointID string) (Resent, error) {
	var r Resent
	err := c.do(ctx, http.MethodPost, "/v1/events/"+url.PathEscape(eventID)+"/resend", ResendInput{EndpointID: endpointID}, &r)
	return r, err
}

// Wait polls a replay every interval until it is no longer running,
// calling progress (if not nil) after each poll.
func (c *Client) Wait(ctx context.Context, id string, every time.Duration, progress func(Replay)) (Replay, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r, err := c.ReplayStatus(ctx, id)
		if err != nil {
			return r, err
		}
		if progress != nil {
			progress(r)
		}
		if r.State != StateRunning {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Title == "" {
			e.Title = http.StatusText(resp.StatusCode)
			e.Detail = strings.TrimSpace(string(b))
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
