// Package cli is the herald command's operator subcommands: they talk to a
// running deployment's HTTP API with a tenant's API key, so they work the
// same against the all-in-one and against a cluster.
//
//	herald dlq list    [--endpoint ID] [--event-type T] [--since T] [--until T] [--limit N] [--cursor C] [--all] [--json]
//	herald dlq replay  (--id N ... | --endpoint ID | --event-type T | --since T | --until T | --all) [--rate N] [--wait] [--json]
//	herald dlq status  REPLAY_ID [--json]
//
// Every command takes --api (default $HERALD_API_URL or
// http://127.0.0.1:8080) and --key (default $HERALD_API_KEY). Times are RFC
// 3339, or a duration meaning that long ago (--since 24h).
package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/heraldhq/herald/pkg/dlq"
)

// Env is how the commands read the environment (os.Getenv in a process).
type Env func(string) string

// Main runs args (without the program name) as a process would: signals
// cancel it, output goes to stdout and stderr. It returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, os.Stdout, os.Stderr, os.Getenv)
}

// Run runs one command: args[0] is the command group ("dlq"). Exit codes:
// 0 success, 1 the operation failed (or a replay had failures), 2 usage.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) int {
	c := &cmd{ctx: ctx, out: stdout, err: stderr, env: env, now: time.Now}
	if len(args) < 2 || args[0] != "dlq" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[1] {
	case "list", "ls":
		return c.list(args[2:])
	case "replay":
		return c.replay(args[2:])
	case "status":
		return c.status(args[2:])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "herald dlq: unknown command %q\n\n%s", args[1], usage)
		return 2
	}
}

const usage = `usage:
  herald dlq list    [--endpoint ID] [--event-type T] [--since T] [--until T] [--limit N] [--cursor C] [--all] [--json]
  herald dlq replay  (--id N ... | --endpoint ID | --event-type T | --since T | --until T | --all) [--rate N] [--wait] [--json]
  herald dlq status  REPLAY_ID [--json]

common flags:
  --api URL   the deployment's API (default $HERALD_API_URL, else http://127.0.0.1:8080)
  --key KEY   the tenant's API key (default $HERALD_API_KEY)
  --json      print JSON instead of a table

Times are RFC 3339 (2026-11-22T21:00:00Z) or a duration meaning that long ago (24h, 90m).
Dead letters are listed oldest first.
`

type cmd struct {
	ctx      context.Context
	out, err io.Writer
	env      Env
	now      func() time.Time

	api, key string
	json     bool
}

func (c *cmd) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("herald dlq "+name, flag.ContinueOnError)
	fs.SetOutput(c.err)
	def := c.env("HERALD_API_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&c.api, "api", def, "the deployment's API address")
	fs.StringVar(&c.key, "key", c.env("HERALD_API_KEY"), "the tenant's API key (or $HERALD_API_KEY)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	return fs
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cmd) client() (*dlq.Client, bool) {
	if c.key == "" {
		fmt.Fprintln(c.err, "herald dlq: no API key: pass --key or set HERALD_API_KEY")
		return nil, false
	}
	return &dlq.Client{Base: c.api, Key: c.key, HTTP: &http.Client{Timeout: 60 * time.Second}}, true
}

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

func (c *cmd) fail(err error) int {
	fmt.Fprintln(c.err, "herald dlq:", err)
	return 1
}

func (c *cmd) list(args []string) int {
	fs := c.flags("list")
	var q dlq.Query
	c.filterFlags(fs, &q.Filter)
	fs.IntVar(&q.Limit, "limit", 0, "dead letters per page (1 to 100, default 50)")
	cursor := fs.String("cursor", "", "start at this next_cursor of a previous page")
	all := fs.Bool("all", false, "follow next_cursor through every page")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		if err == nil {
			fmt.Fprintf(c.err, "herald dlq list: unexpected %q\n", pos[0])
		}
		return 2
	}
	if *cursor != "" {
		n, err := dlq.DecodeCursor(*cursor)
		if err != nil {
			fmt.Fprintln(c.err, "herald dlq list: --cursor is not a next_cursor of a previous page")
			return 2
		}
		q.Cursor = n
	}
	cl, ok := c.client()
	if !ok {
		return 2
	}
	var page dlq.Page
	for {
		p, err := cl.List(c.ctx, q)
		if err != nil {
			return c.fail(err)
		}
		page.Data = append(page.Data, p.Data...)
		page.NextCursor = p.NextCursor
		if !*all || p.NextCursor == nil {
			break
		}
		if q.Cursor, err = dlq.DecodeCursor(*p.NextCursor); err != nil {
			return c.fail(err)
		}
	}
	if page.Data == nil {
		page.Data = []dlq.Entry{}
	}
	if c.json {
		return c.printJSON(page)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEAD AT\tENDPOINT\tEVENT TYPE\tEVENT ID\tATTEMPTS\tREASON")
	for _, e := range page.Data {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", e.ID, e.DeadAt.Format(time.RFC3339), e.EndpointID,
			e.Event.Type, e.Event.ID, lastAttempt(e), oneLine(e.Reason, 80))
	}
	_ = tw.Flush()
	if page.NextCursor != nil {
		fmt.Fprintf(c.err, "more dead letters: --cursor %s (or --all)\n", *page.NextCursor)
	} else if len(page.Data) == 0 {
		fmt.Fprintln(c.err, "no dead letters match")
	}
	return 0
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

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-1] + "…"
	}
	return s
}

func (c *cmd) replay(args []string) int {
	fs := c.flags("replay")
	var f dlq.Filter
	var ids []uint64
	c.filterFlags(fs, &f)
	fs.Var(idsFlag{&ids}, "id", "replay this dead letter (repeat, or comma-separate, for several)")
	all := fs.Bool("all", false, "replay every dead letter of the tenant")
	rate := fs.Int("rate", 0, "jobs per second (default 50)")
	wait := fs.Bool("wait", false, "follow the replay's progress until it ends")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		if err == nil {
			fmt.Fprintf(c.err, "herald dlq replay: unexpected %q\n", pos[0])
		}
		return 2
	}
	in := dlq.ReplayInput{IDs: ids, EndpointID: f.EndpointID, EventType: f.EventType, All: *all, Rate: *rate}
	if !f.Since.IsZero() {
		in.Since = dlq.FormatTime(f.Since)
	}
	if !f.Until.IsZero() {
		in.Until = dlq.FormatTime(f.Until)
	}
	if len(ids) == 0 && in.EndpointID == "" && in.EventType == "" && in.Since == "" && in.Until == "" && !in.All {
		fmt.Fprintln(c.err, "herald dlq replay: say what to replay: --id, a filter (--endpoint, --event-type, --since, --until), or --all")
		return 2
	}
	cl, ok := c.client()
	if !ok {
		return 2
	}
	r, err := cl.Replay(c.ctx, in)
	if err != nil {
		return c.fail(err)
	}
	if !c.json {
		fmt.Fprintf(c.out, "replay %s started (%s at %d/s); follow it with: herald dlq status %s\n", r.ID, describe(r), r.Rate, r.ID)
	}
	if *wait {
		r, err = cl.Wait(c.ctx, r.ID, 500*time.Millisecond, func(p dlq.Replay) {
			if !c.json {
				fmt.Fprintf(c.err, "%s: %d/%d replayed, %d failed, %d skipped\n", p.State, p.Replayed, p.Total, p.Failed, p.Skipped)
			}
		})
		if err != nil {
			return c.fail(err)
		}
	}
	if c.json {
		c.printJSON(r)
	} else if *wait {
		c.printReplay(r)
	}
	if *wait && (r.State != dlq.StateDone || r.Failed > 0) {
		return 1
	}
	return 0
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
		parts = append(parts, "since "+r.Filter.Since.Format(time.RFC3339))
	}
	if !r.Filter.Until.IsZero() {
		parts = append(parts, "until "+r.Filter.Until.Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return "every dead letter"
	}
	return strings.Join(parts, ", ")
}

func (c *cmd) status(args []string) int {
	fs := c.flags("status")
	pos, err := parse(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(c.err, "usage: herald dlq status REPLAY_ID [--json]")
		return 2
	}
	cl, ok := c.client()
	if !ok {
		return 2
	}
	r, err := cl.ReplayStatus(c.ctx, pos[0])
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(r)
	}
	c.printReplay(r)
	return 0
}

func (c *cmd) printReplay(r dlq.Replay) {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "replay\t%s\n", r.ID)
	fmt.Fprintf(tw, "state\t%s\n", r.State)
	fmt.Fprintf(tw, "selects\t%s\n", describe(r))
	fmt.Fprintf(tw, "rate\t%d/s\n", r.Rate)
	fmt.Fprintf(tw, "progress\t%d/%d replayed, %d failed, %d skipped\n", r.Replayed, r.Total, r.Failed, r.Skipped)
	if !r.StartedAt.IsZero() {
		fmt.Fprintf(tw, "started\t%s\n", r.StartedAt.Format(time.RFC3339))
	}
	if !r.FinishedAt.IsZero() {
		fmt.Fprintf(tw, "finished\t%s\n", r.FinishedAt.Format(time.RFC3339))
	}
	if r.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.Error)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "failed\t%d: %s\n", e.ID, e.Error)
	}
	_ = tw.Flush()
}

func (c *cmd) printJSON(v any) int {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(err)
	}
	return 0
}
