package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/listen"
)

var listenCommands = []command{
	{name: "listen", synopsis: "--forward-to URL [--events TYPES] [flags]", api: true,
		summary: "Forwards the tenant's events to a server on this machine, signed as any\n" +
			"endpoint's are, through a stream this command opens to Herald: no inbound\n" +
			"port, no tunnel. It makes a temporary endpoint, prints its signing secret,\n" +
			"and a line per delivery with the local server's answer, which is the\n" +
			"attempt's outcome (retries and history as for any endpoint). Ctrl-C\n" +
			"deletes the endpoint.",
		help: "  --forward-to URL        the local URL each delivery is sent to (required)\n" +
			"  --events TYPES          the event types to forward: exact, prefix.* or *;\n" +
			"                          comma-separated or repeated (default *)\n" +
			"  --name NAME             the temporary endpoint's name\n" +
			"  --signature SCHEME      standard (default), ed25519, github, hex or none\n" +
			"  --payload-format FMT    standard (default) or raw\n" +
			"  --secret SECRET         sign with this secret (default: a new one), so a\n" +
			"                          local server configured once keeps verifying\n" +
			"  --header NAME=VALUE     a header sent with every delivery (repeat)\n" +
			"  --max-attempts N        attempts before a delivery is dead-lettered\n",
		run: (*cmd).listen},
}

// forwardTimeout bounds a local request whose relayed attempt carries no
// deadline.
const forwardTimeout = 30 * time.Second

// forwardWorkers is how many deliveries are forwarded at once: the
// endpoint's concurrency cap bounds what Herald sends anyway.
const forwardWorkers = 16

// listen runs `herald listen`: POST /v1/listen makes the temporary
// endpoint, GET /v1/endpoints/{id}/listen streams its deliveries, each is
// forwarded to --forward-to and its answer posted back; at the end the
// endpoint is deleted.
func (c *cmd) listen(args []string) error {
	fs := c.flagSet("listen")
	forward := fs.String("forward-to", "", "the local URL")
	_, read := endpointBody(fs)
	_, cl, asJSON, err := c.prepare(fs, args)
	if err != nil {
		return err
	}
	if *forward == "" {
		return usagef("--forward-to is required: the local URL deliveries go to, such as http://localhost:3000/hook")
	}
	target, err := url.Parse(*forward)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return usagef("--forward-to %q: want an absolute http or https URL", *forward)
	}
	body, err := read(c.std.In)
	if err != nil {
		return err
	}
	if _, ok := body["name"]; !ok {
		body["name"] = "herald listen → " + target.Host
	}
	var ep endpoint
	if _, err := cl.call(c.ctx, http.MethodPost, "/v1/listen", body, &ep); err != nil {
		return err
	}
	defer func() {
		// The endpoint goes with this command, whatever ended it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 10*time.Second)
		defer cancel()
		if _, err := cl.do(ctx, http.MethodDelete, apiPath("/v1/endpoints", ep.ID), nil); err != nil {
			fmt.Fprintf(c.std.Err, "the temporary endpoint %s was not deleted (%v); Herald deletes it within minutes\n", ep.ID, err)
		}
	}()
	fmt.Fprintf(c.std.Err, "Forwarding %s to %s (endpoint %s)\n", strings.Join(ep.Events, ", "), target, ep.ID)
	switch {
	case ep.Secret != "":
		fmt.Fprintf(c.std.Err, "Signing secret: %s\n", ep.Secret)
	case ep.PublicKey != "": // ed25519: the receiver verifies with the public key
		fmt.Fprintf(c.std.Err, "Public key: %s\n", ep.PublicKey)
	}
	f := &forwarder{c: c, cl: cl, ep: ep.ID, target: target.String(), asJSON: asJSON,
		http: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	return f.run()
}

// forwarder relays one listen endpoint's deliveries to the local server.
type forwarder struct {
	c      *cmd
	cl     *client
	ep     string
	target string
	asJSON bool
	http   *http.Client
	out    sync.Mutex // one line at a time
	ready  bool       // the stream opened once
}

// run reads the stream, reconnecting after a break, until the command is
// stopped.
func (f *forwarder) run() error {
	ctx := f.c.ctx
	slots := make(chan struct{}, forwardWorkers)
	var wg sync.WaitGroup
	defer wg.Wait()
	path := apiPath("/v1/endpoints", f.ep) + "/listen"
	wait := 500 * time.Millisecond
	for {
		opened := time.Now()
		err := f.cl.stream(ctx, path, func(event, data string) error {
			switch event {
			case "ready":
				if !f.ready {
					fmt.Fprintln(f.c.std.Err, "Ready. Ctrl-C stops and deletes the endpoint.")
				} else {
					fmt.Fprintln(f.c.std.Err, "Reconnected.")
				}
				f.ready = true
				return nil
			case "error":
				return fmt.Errorf("the server ended the stream: %s", strings.Trim(data, `"`))
			case "request":
			default:
				return nil
			}
			var req listen.Request
			if err := json.Unmarshal([]byte(data), &req); err != nil {
				return fmt.Errorf("a request in the stream is not what herald expects: %w", err)
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				f.forward(ctx, req)
			}()
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		if ae, ok := errors.AsType[*apiError](err); ok && ae.Status < 500 && ae.Status != http.StatusTooManyRequests {
			return err // the endpoint was deleted, the key revoked: nothing to wait for
		}
		if time.Since(opened) > time.Minute {
			wait = 500 * time.Millisecond
		}
		fmt.Fprintf(f.c.std.Err, "stream lost (%v); reconnecting in %v\n", err, wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		wait = min(2*wait, 15*time.Second)
	}
}

// forwarded is one delivery as `herald listen -o json` prints it.
type forwarded struct {
	Time      time.Time `json:"time"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type,omitempty"`
	Attempt   string    `json:"attempt"`
	Status    int       `json:"status,omitempty"`
	Error     string    `json:"error,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
	Late      bool      `json:"late,omitempty"`
}

// forward sends one request to the local server and posts its answer back.
func (f *forwarder) forward(ctx context.Context, req listen.Request) {
	deadline := req.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(forwardTimeout)
	}
	fctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	rec := forwarded{Time: time.Now(), EventID: req.Header.Get("webhook-id"), Attempt: req.Header.Get("Herald-Attempt"), EventType: eventType(req.Body)}
	resp := listen.Response{RequestID: req.ID}
	start := time.Now()
	hr, err := http.NewRequestWithContext(fctx, req.Method, f.target, bytes.NewReader(req.Body))
	if err == nil {
		for k, vs := range req.Header {
			if k != "Host" && k != "Content-Length" {
				hr.Header[k] = vs
			}
		}
		var r *http.Response
		if r, err = f.http.Do(hr); err == nil {
			// A body cut short is still the start of the answer: keep what came.
			b, _ := io.ReadAll(io.LimitReader(r.Body, listen.MaxResponseBody))
			_ = r.Body.Close()
			resp.Status, resp.Header, resp.Body = r.StatusCode, r.Header, b
		}
	}
	rec.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		resp.Error = localError(err)
		rec.Error = resp.Error
	}
	rec.Status = resp.Status
	if ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		_, perr := f.cl.do(pctx, http.MethodPost, apiPath("/v1/endpoints", f.ep)+"/listen/responses", resp)
		pcancel()
		if ae, ok := errors.AsType[*apiError](perr); ok && ae.Status == http.StatusGone {
			rec.Late = true
		} else if perr != nil && ctx.Err() == nil {
			rec.Error = strings.TrimPrefix(rec.Error+"; answer not delivered to Herald: "+perr.Error(), "; ")
		}
	}
	f.print(rec)
}

// localError describes why the local server gave no answer, without the
// URL net/http repeats.
func localError(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the local server did not answer before the attempt's timeout"
	}
	return err.Error()
}

// eventType reads the type of a Standard Webhooks envelope, if the body is one.
func eventType(body []byte) string {
	var env struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &env) != nil {
		return ""
	}
	return env.Type
}

// print writes one delivery: a JSON object, or a line within 80 columns.
func (f *forwarder) print(r forwarded) {
	f.out.Lock()
	defer f.out.Unlock()
	if f.asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(f.c.std.Out, string(b))
		return
	}
	outcome := fmt.Sprintf("%d %s", r.Status, http.StatusText(r.Status))
	if r.Error != "" {
		outcome = r.Error
	}
	if r.Late {
		outcome += " (too late)"
	}
	fmt.Fprintf(f.c.std.Out, "%s %-16s %-14s #%-2s → %-18s %5.0fms\n", r.Time.Local().Format(time.TimeOnly),
		cut(r.EventType, 16), cut(r.EventID, 14), r.Attempt, cut(outcome, 18), r.LatencyMS)
}
