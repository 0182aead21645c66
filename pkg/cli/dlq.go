package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/dlq"
)

var dlqCommands = []command{
	{name: "dlq list", synopsis: "[--endpoint ID] [--event-type T] [--since T] [flags]", api: true,
		summary: "Lists dead letters, oldest first (they expire first).",
		help:    dlqFilterHelp + pageHelp, run: (*cmd).dlqList},
	{name: "dlq replay", synopsis: "(--id N | FILTER | --all) [--rate N] [--wait]", api: true,
		summary: "Replays dead letters in the background at a steady rate, each with a\nfresh attempt budget. With --wait, follows it and exits 1 unless all went.",
		help: "  --id N              this dead letter (repeat, or comma-separate)\n" +
			"FILTER is one or more of:\n" + dlqFilterHelp +
			"  --all               every dead letter of the tenant\n" +
			"  --rate N            jobs per second (default 50)\n" +
			"  --wait              follow the replay until it ends\n",
		run: (*cmd).dlqReplay},
	{name: "dlq status", synopsis: "REPLAY_ID", api: true,
		summary: "Shows a replay's progress.",
		run:     (*cmd).dlqStatus},
}

const dlqFilterHelp = `  --endpoint ID       only this endpoint's dead letters
  --event-type T      only this event type (exact, prefix.* or *)
  --since T           dead since T: RFC 3339 (2026-11-22T21:00:00Z) or a
                      duration ago (24h, 90m)
  --until T           dead until T (the same forms)
`

// timeFlag is an RFC 3339 time or a duration ago.
type timeFlag struct {
	t   *time.Time
	now func() time.Time
}

func (f timeFlag) String() string {
	if f.t == nil || f.t.IsZero() {
		return ""
	}
	return dlq.FormatTime(*f.t)
}

func (f timeFlag) Set(s string) error {
	t, err := parseWhen(s, f.now())
	if err != nil {
		return err
	}
	*f.t = t
	return nil
}

func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := dlq.ParseTime(s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("want an RFC 3339 time (2026-11-22T21:00:00Z) or a duration ago (24h)")
}

// idsFlag collects --id values, repeated or comma-separated.
type idsFlag struct{ ids *[]uint64 }

func (f idsFlag) String() string { return "" }

func (f idsFlag) Set(s string) error {
	for p := range strings.SplitSeq(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a dead letter id", p)
		}
		*f.ids = append(*f.ids, n)
	}
	return nil
}

func (c *cmd) filterFlags(fs *flag.FlagSet, f *dlq.Filter) {
	fs.StringVar(&f.EndpointID, "endpoint", "", "only this endpoint's dead letters")
	fs.StringVar(&f.EventType, "event-type", "", "only this event type (exact, prefix.*, or *)")
	fs.Var(timeFlag{&f.Since, c.now}, "since", "dead since this time (RFC 3339 or a duration ago)")
	fs.Var(timeFlag{&f.Until, c.now}, "until", "dead until this time (RFC 3339 or a duration ago)")
}

func (c *cmd) dlqList(args []string) error {
	fs := c.flagSet("dlq list")
	var q dlq.Query
	c.filterFlags(fs, &q.Filter)
	var pf pageFlags
	pf.register(fs)
	_, cl, asJSON, err := c.prepare(fs, args)
	if err != nil {
		return err
	}
	if pf.cursor != "" {
		if _, err := dlq.DecodeCursor(pf.cursor); err != nil {
			return usagef("--cursor is not a next_cursor of a previous page")
		}
	}
	v := q.Values()
	for k, vs := range pf.query() {
		v[k] = vs
	}
	p, err := cl.list(c.ctx, "/v1/dlq", v, pf.all)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(p)
	}
	t := table{head: []string{"ID", "AGE", "ENDPOINT", "EVENT", "TRIES", "REASON"}, cut: []int{3, 5}}
	for _, raw := range p.Data {
		var e dlq.Entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("a dead letter in the answer is not what herald expects: %w", err)
		}
		t.add(strconv.FormatUint(e.ID, 10), ageOf(e.DeadAt, c.now()), e.EndpointID, e.Event.ID,
			strconv.FormatUint(uint64(lastAttempt(e)), 10), e.Reason)
	}
	if err := t.write(c.std.Out); err != nil {
		return err
	}
	c.morePages(p, "dead letters")
	return nil
}

// lastAttempt is the number of the last attempt recorded (0 when none was
// made, e.g. dead-lettered because the endpoint was disabled).
func lastAttempt(e dlq.Entry) uint32 {
	var n uint32
	for _, a := range e.Attempts {
		n = max(n, a.Number)
	}
	return n
}

func (c *cmd) dlqReplay(args []string) error {
	fs := c.flagSet("dlq replay")
	var f dlq.Filter
	var ids []uint64
	c.filterFlags(fs, &f)
	fs.Var(idsFlag{&ids}, "id", "replay this dead letter")
	all := fs.Bool("all", false, "replay every dead letter of the tenant")
	rate := fs.Int("rate", 0, "jobs per second")
	wait := fs.Bool("wait", false, "follow the replay until it ends")
	_, cl, asJSON, err := c.prepare(fs, args)
	if err != nil {
		return err
	}
	in := dlq.ReplayInput{IDs: ids, EndpointID: f.EndpointID, EventType: f.EventType, All: *all, Rate: *rate}
	if !f.Since.IsZero() {
		in.Since = dlq.FormatTime(f.Since)
	}
	if !f.Until.IsZero() {
		in.Until = dlq.FormatTime(f.Until)
	}
	if len(ids) == 0 && in.EndpointID == "" && in.EventType == "" && in.Since == "" && in.Until == "" && !in.All {
		return usagef("say what to replay: --id, a filter (--endpoint, --event-type, --since, --until), or --all")
	}
	var r dlq.Replay
	if _, err := cl.call(c.ctx, http.MethodPost, "/v1/dlq/replay", in, &r); err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(c.std.Out, "Replay %s started (%s at %d/s); follow it with: herald dlq status %s\n", r.ID, describe(r), r.Rate, r.ID)
	}
	if *wait {
		if r, err = c.waitReplay(cl, r.ID, !asJSON); err != nil {
			return err
		}
	}
	switch {
	case asJSON:
		err = c.printJSON(r)
	case *wait:
		err = printReplay(c, r)
	}
	if err == nil && *wait && (r.State != dlq.StateDone || r.Failed > 0) {
		return errReported
	}
	return err
}

// waitReplay polls a replay until it is no longer running, reporting its
// progress on stderr when told to.
func (c *cmd) waitReplay(cl *client, id string, progress bool) (dlq.Replay, error) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		var r dlq.Replay
		if _, err := cl.call(c.ctx, http.MethodGet, apiPath("/v1/dlq/replays", id), nil, &r); err != nil {
			return r, err
		}
		if progress {
			fmt.Fprintf(c.std.Err, "%s: %d/%d replayed, %d failed, %d skipped\n", r.State, r.Replayed, r.Total, r.Failed, r.Skipped)
		}
		if r.State != dlq.StateRunning {
			return r, nil
		}
		select {
		case <-c.ctx.Done():
			return r, c.ctx.Err()
		case <-t.C:
		}
	}
}

func describe(r dlq.Replay) string {
	if r.Filter == nil {
		return fmt.Sprintf("%d dead letters by id", len(r.IDs))
	}
	var parts []string
	if r.Filter.EndpointID != "" {
		parts = append(parts, "endpoint "+r.Filter.EndpointID)
	}
	if r.Filter.EventType != "" {
		parts = append(parts, "type "+r.Filter.EventType)
	}
	if !r.Filter.Since.IsZero() {
		parts = append(parts, "since "+timeOf(r.Filter.Since))
	}
	if !r.Filter.Until.IsZero() {
		parts = append(parts, "until "+timeOf(r.Filter.Until))
	}
	if len(parts) == 0 {
		return "every dead letter"
	}
	return strings.Join(parts, ", ")
}

func (c *cmd) dlqStatus(args []string) error {
	pos, cl, asJSON, err := c.prepare(c.flagSet("dlq status"), args, "REPLAY_ID")
	if err != nil {
		return err
	}
	var r dlq.Replay
	raw, err := cl.call(c.ctx, http.MethodGet, apiPath("/v1/dlq/replays", pos[0]), nil, &r)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(raw)
	}
	return printReplay(c, r)
}

func printReplay(c *cmd, r dlq.Replay) error {
	var k kv
	k.add("replay", r.ID)
	k.add("state", string(r.State))
	k.add("selects", describe(r))
	k.add("rate", fmt.Sprintf("%d/s", r.Rate))
	k.add("progress", fmt.Sprintf("%d/%d replayed, %d failed, %d skipped", r.Replayed, r.Total, r.Failed, r.Skipped))
	k.add("started", timeOf(r.StartedAt))
	k.add("finished", timeOf(r.FinishedAt))
	k.add("error", r.Error)
	for _, e := range r.Errors {
		k.add("failed", fmt.Sprintf("%d: %s", e.ID, e.Error))
	}
	return k.write(c.std.Out)
}
