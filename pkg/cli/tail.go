package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

var tailCommands = []command{
	{name: "tail", synopsis: "[--endpoint ID] [--event-type TYPE] [--status STATUS] [flags]", api: true,
		summary: "Follows the tenant's delivery attempts as they happen, one line each:\ntime, event, endpoint, attempt, outcome and latency. Ctrl-C stops it.",
		help: "  --endpoint ID         only this endpoint's attempts\n" +
			"  --event-type FILTER   only events matching it (post.published, post.*)\n" +
			"  --status STATUS       failed or succeeded (default: both)\n",
		run: (*cmd).tail},
}

// tail prints the attempts GET /v1/attempts/stream sends, as they come: a
// line each, or with --output json the attempt's JSON, one per line.
func (c *cmd) tail(args []string) error {
	fs := c.flagSet("tail")
	ep := fs.String("endpoint", "", "the endpoint")
	typ := fs.String("event-type", "", "event type filter")
	status := fs.String("status", "", "failed or succeeded")
	_, cl, asJSON, err := c.prepare(fs, args)
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"endpoint_id": *ep, "event_type": *typ, "status": *status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/v1/attempts/stream"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if !asJSON {
		fmt.Fprintln(c.std.Err, "following attempts; Ctrl-C stops")
	}
	return cl.stream(c.ctx, path, func(event, data string) error {
		switch event {
		case "attempt":
		case "error":
			return fmt.Errorf("the server ended the stream: %s", strings.Trim(data, `"`))
		default:
			return nil
		}
		if asJSON {
			_, err := fmt.Fprintln(c.std.Out, data)
			return err
		}
		var a attempt
		if err := json.Unmarshal([]byte(data), &a); err != nil {
			return fmt.Errorf("an attempt in the stream is not what herald expects: %w", err)
		}
		_, err := fmt.Fprintln(c.std.Out, tailLine(a))
		return err
	})
}

// tailLine is one attempt in a line that fits 80 columns for ids of
// Herald's usual length: time, event, endpoint, attempt, outcome, latency.
func tailLine(a attempt) string {
	return fmt.Sprintf("%s %-13s %s #%-2d %-15s %4.0fms", a.At.Local().Format(time.TimeOnly), cut(a.EventID, 13), a.EndpointID, a.Number, cut(a.outcome(), 15), a.LatencyMS)
}
