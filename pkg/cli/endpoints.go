package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

const endpointFieldsHelp = `  --name NAME             a name for people (required)
  --url URL               where to deliver (required)
  --events TYPES          the event types it wants (required): exact,
                          prefix.* or *; comma-separated or repeated
  --description TEXT
  --method METHOD         POST (default), PUT or PATCH
  --content-type TYPE     application/json (default) or
                          application/x-www-form-urlencoded
  --header NAME=VALUE     a header sent with every delivery (repeat for more)
  --signature SCHEME      standard (Standard Webhooks HMAC, default),
                          ed25519, github, hex or none
  --payload-format FMT    standard (the Standard Webhooks envelope, default)
                          or raw (the event's data alone)
  --secret SECRET         the signing secret (default: one is generated)
  --max-attempts N        attempts before a delivery is dead-lettered (1-20,
                          default 5)
  --timeout-ms N          how long one attempt may take (1000-30000, default
                          10000)
  --rate-limit N          requests per second at most (0: no limit)
  --metadata KEY=VALUE    your own data on the endpoint (repeat for more)
  --status STATUS         active, paused or disabled
  --file FILE             a JSON body with any of the fields above ("-":
                          stdin); the flags given override its fields
`

var endpointCommands = []command{
	{name: "endpoints list", synopsis: "[--limit N] [--cursor C] [--all]", api: true,
		summary: "Lists the tenant's endpoints, in id order. The JSON has every field\n(header values masked); endpoints get shows one in full.",
		help:    pageHelp, run: (*cmd).listEndpoints},
	{name: "endpoints get", synopsis: "ID", api: true,
		summary: "Shows one endpoint: its secret, headers and backlog included.",
		run:     (*cmd).getEndpoint},
	{name: "endpoints create", synopsis: "--name NAME --url URL --events TYPES [flags]", api: true,
		summary: "Creates an endpoint, active unless --status says otherwise. The answer\nshows its signing secret.",
		help:    endpointFieldsHelp, run: (*cmd).createEndpoint},
	{name: "endpoints update", synopsis: "ID [flags]", api: true,
		summary: "Changes the fields given and keeps the others. --header and --metadata\nreplace all the headers or metadata.",
		help:    endpointFieldsHelp, run: (*cmd).updateEndpoint},
	{name: "endpoints delete", synopsis: "ID", api: true,
		summary: "Deletes an endpoint; what it had waiting is dropped.",
		run:     (*cmd).deleteEndpoint},
	{name: "endpoints test", synopsis: "ID [--event-type TYPE] [--data JSON]", api: true,
		summary: "Sends one signed test event now, as a real delivery would be sent, and\nshows the outcome. Exits 1 unless the endpoint answered 2xx.",
		help: "  --event-type TYPE   the type sent (default webhook.test)\n" +
			"  --data JSON         the event's data (default: the type's example)\n",
		run: (*cmd).testEndpoint},
	{name: "endpoints pause", synopsis: "ID", api: true,
		summary: "Pauses deliveries: they are held in order (the backlog) until resumed.",
		run:     func(c *cmd, args []string) error { return c.setPaused("pause", args, true) }},
	{name: "endpoints resume", synopsis: "ID", api: true,
		summary: "Resumes a paused endpoint: what it held is sent now. A disabled\nendpoint stays disabled (endpoints update ID --status active).",
		run:     func(c *cmd, args []string) error { return c.setPaused("resume", args, false) }},
	{name: "endpoints rotate-secret", synopsis: "ID [--secret SECRET] [--grace DURATION]", api: true,
		summary: "Starts signing with a new secret. Until the grace period ends requests\ncarry signatures by both, so receivers can switch at their pace.",
		help: "  --secret SECRET     the new secret (default: one is generated)\n" +
			"  --grace DURATION    how long the old one keeps signing (default 24h;\n" +
			"                      0 drops it at once)\n",
		run: (*cmd).rotateSecret},
}

const pageHelp = `  --limit N           items per page (1 to 100, default 50)
  --cursor C          start at the next_cursor of a previous page
  --all               follow next_cursor through every page
`

// endpoint is what the CLI shows of an endpoint.
type endpoint struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Description    string            `json:"description"`
	URL            string            `json:"url"`
	Events         []string          `json:"events"`
	Method         string            `json:"method"`
	ContentType    string            `json:"content_type"`
	Headers        map[string]string `json:"headers"`
	Signature      string            `json:"signature"`
	PayloadFormat  string            `json:"payload_format"`
	Secret         string            `json:"secret"`
	PublicKey      string            `json:"public_key"`
	Status         string            `json:"status"`
	DisabledReason string            `json:"disabled_reason"`
	Backlog        *struct {
		Count    int       `json:"count"`
		OldestAt time.Time `json:"oldest_at"`
	} `json:"backlog"`
	MaxAttempts int               `json:"max_attempts"`
	TimeoutMS   int               `json:"timeout_ms"`
	RateLimit   int               `json:"rate_limit"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// pageFlags are the flags of a listing.
type pageFlags struct {
	limit  int
	cursor string
	all    bool
}

func (p *pageFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&p.limit, "limit", 0, "items per page")
	fs.StringVar(&p.cursor, "cursor", "", "start at this next_cursor")
	fs.BoolVar(&p.all, "all", false, "every page")
}

func (p *pageFlags) query() url.Values {
	q := url.Values{}
	if p.limit != 0 {
		q.Set("limit", strconv.Itoa(p.limit))
	}
	if p.cursor != "" {
		q.Set("cursor", p.cursor)
	}
	return q
}

// morePages says, under a table, how to see the next page.
func (c *cmd) morePages(p rawPage, what string) {
	if p.NextCursor != nil {
		fmt.Fprintf(c.std.Err, "More %s: --cursor %s (or --all)\n", what, *p.NextCursor)
	} else if len(p.Data) == 0 {
		fmt.Fprintf(c.std.Err, "No %s.\n", what)
	}
}

// prepare parses a command's flags and positional arguments, and resolves
// the output format and the client.
func (c *cmd) prepare(fs *flag.FlagSet, args []string, names ...string) ([]string, *client, bool, error) {
	pos, err := parseArgs(fs, args, names...)
	if err != nil {
		return nil, nil, false, err
	}
	asJSON, err := c.asJSON()
	if err != nil {
		return nil, nil, false, err
	}
	cl, err := c.client()
	return pos, cl, asJSON, err
}

func (c *cmd) listEndpoints(args []string) error {
	fs := c.flagSet("endpoints list")
	var pf pageFlags
	pf.register(fs)
	_, cl, asJSON, err := c.prepare(fs, args)
	if err != nil {
		return err
	}
	p, err := cl.list(c.ctx, "/v1/endpoints", pf.query(), pf.all)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(p)
	}
	t := table{head: []string{"ID", "STATUS", "NAME", "URL"}, cut: []int{2, 3}}
	for _, raw := range p.Data {
		var e endpoint
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("an endpoint in the answer is not what herald expects: %w", err)
		}
		t.add(e.ID, e.Status, e.Name, e.URL)
	}
	if err := t.write(c.std.Out); err != nil {
		return err
	}
	c.morePages(p, "endpoints")
	return nil
}

func (c *cmd) getEndpoint(args []string) error {
	pos, cl, asJSON, err := c.prepare(c.flagSet("endpoints get"), args, "ID")
	if err != nil {
		return err
	}
	return c.showEndpoint(cl, http.MethodGet, apiPath("/v1/endpoints", pos[0]), nil, asJSON)
}

// showEndpoint sends a request answered with one endpoint, and prints it.
func (c *cmd) showEndpoint(cl *client, method, p string, in any, asJSON bool) error {
	var e endpoint
	raw, err := cl.call(c.ctx, method, p, in, &e)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(raw)
	}
	return printEndpoint(c.std.Out, e)
}

func printEndpoint(w io.Writer, e endpoint) error {
	var k kv
	k.add("id", e.ID)
	k.add("name", e.Name)
	k.add("description", e.Description)
	k.add("url", e.URL)
	k.add("events", strings.Join(e.Events, ", "))
	status := e.Status
	if e.DisabledReason != "" {
		status += " (" + e.DisabledReason + ")"
	}
	k.add("status", status)
	if b := e.Backlog; b != nil && b.Count > 0 {
		k.add("backlog", fmt.Sprintf("%d held, the oldest since %s", b.Count, timeOf(b.OldestAt)))
	}
	k.add("method", e.Method)
	k.add("content type", e.ContentType)
	k.add("signature", e.Signature)
	k.add("secret", e.Secret)
	k.add("public key", e.PublicKey)
	k.add("payload format", e.PayloadFormat)
	k.add("max attempts", strconv.Itoa(e.MaxAttempts))
	k.add("timeout", fmt.Sprintf("%d ms", e.TimeoutMS))
	if e.RateLimit > 0 {
		k.add("rate limit", fmt.Sprintf("%d/s", e.RateLimit))
	}
	for _, h := range slices.Sorted(maps.Keys(e.Headers)) {
		k.add("header", h+": "+e.Headers[h])
	}
	for _, m := range slices.Sorted(maps.Keys(e.Metadata)) {
		k.add("metadata", m+"="+e.Metadata[m])
	}
	k.add("created", timeOf(e.CreatedAt))
	k.add("updated", timeOf(e.UpdatedAt))
	return k.write(w)
}

// fieldFlag is an endpoint field given as a flag: setting it puts the
// field in the request body, so a PATCH sends exactly the flags given.
type fieldFlag struct {
	body  map[string]any
	field string
	kind  byte // 's' string, 'l' list, 'm' map, 'i' int
}

func (f fieldFlag) String() string { return "" }

func (f fieldFlag) Set(s string) error {
	switch f.kind {
	case 'l':
		l, _ := f.body[f.field].([]string)
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				l = append(l, p)
			}
		}
		f.body[f.field] = l
	case 'm':
		m, _ := f.body[f.field].(map[string]string)
		if m == nil {
			m = map[string]string{}
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want NAME=VALUE")
		}
		m[k] = v
		f.body[f.field] = m
	case 'i':
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		f.body[f.field] = n
	default:
		f.body[f.field] = s
	}
	return nil
}

// endpointBody registers the endpoint field flags on fs; the map they fill
// is the request body, read after parsing with the --file it names.
func endpointBody(fs *flag.FlagSet) (body map[string]any, read func(in io.Reader) (map[string]any, error)) {
	body = map[string]any{}
	for _, f := range []struct {
		flag, field string
		kind        byte
	}{
		{"url", "url", 's'}, {"events", "events", 'l'}, {"name", "name", 's'}, {"description", "description", 's'},
		{"method", "method", 's'}, {"content-type", "content_type", 's'}, {"header", "headers", 'm'},
		{"signature", "signature", 's'}, {"payload-format", "payload_format", 's'}, {"secret", "secret", 's'},
		{"max-attempts", "max_attempts", 'i'}, {"timeout-ms", "timeout_ms", 'i'}, {"rate-limit", "rate_limit", 'i'},
		{"metadata", "metadata", 'm'}, {"status", "status", 's'},
	} {
		fs.Var(fieldFlag{body, f.field, f.kind}, f.flag, f.field)
	}
	file := fs.String("file", "", "a JSON body")
	return body, func(in io.Reader) (map[string]any, error) {
		if *file == "" {
			return body, nil
		}
		b, err := readFile(*file, in)
		if err != nil {
			return nil, err
		}
		merged := map[string]any{}
		if err := json.Unmarshal(b, &merged); err != nil {
			return nil, usagef("--file %s: not a JSON object: %v", *file, err)
		}
		maps.Copy(merged, body)
		return merged, nil
	}
}

// readFile reads a file named on the command line, "-" being stdin.
func readFile(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		if stdin == nil {
			return nil, usagef("nothing on stdin")
		}
		return io.ReadAll(stdin)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return b, nil
}

func (c *cmd) createEndpoint(args []string) error {
	fs := c.flagSet("endpoints create")
	_, read := endpointBody(fs)
	_, cl, asJSON, err := c.prepare(fs, args)
	if err != nil {
		return err
	}
	body, err := read(c.std.In)
	if err != nil {
		return err
	}
	return c.showEndpoint(cl, http.MethodPost, "/v1/endpoints", body, asJSON)
}

func (c *cmd) updateEndpoint(args []string) error {
	fs := c.flagSet("endpoints update")
	_, read := endpointBody(fs)
	pos, cl, asJSON, err := c.prepare(fs, args, "ID")
	if err != nil {
		return err
	}
	body, err := read(c.std.In)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return usagef("nothing to change: give the fields to change as flags or --file")
	}
	return c.showEndpoint(cl, http.MethodPatch, apiPath("/v1/endpoints", pos[0]), body, asJSON)
}

func (c *cmd) deleteEndpoint(args []string) error {
	pos, cl, asJSON, err := c.prepare(c.flagSet("endpoints delete"), args, "ID")
	if err != nil {
		return err
	}
	if _, err := cl.do(c.ctx, http.MethodDelete, apiPath("/v1/endpoints", pos[0]), nil); err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(map[string]any{"id": pos[0], "deleted": true})
	}
	fmt.Fprintf(c.std.Out, "Deleted endpoint %s.\n", pos[0])
	return nil
}

// setPaused pauses or resumes: {"paused": true} holds deliveries,
// {"paused": false} sends what was held and leaves a disabled endpoint
// disabled.
func (c *cmd) setPaused(name string, args []string, paused bool) error {
	pos, cl, asJSON, err := c.prepare(c.flagSet("endpoints "+name), args, "ID")
	if err != nil {
		return err
	}
	return c.showEndpoint(cl, http.MethodPatch, apiPath("/v1/endpoints", pos[0]), map[string]bool{"paused": paused}, asJSON)
}

// attempt is one delivery attempt as the API shows it.
type attempt struct {
	ID             string     `json:"id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	EndpointID     string     `json:"endpoint_id"`
	Number         int        `json:"attempt"`
	At             time.Time  `json:"at"`
	Status         string     `json:"status"`
	ResponseStatus int        `json:"response_status"`
	LatencyMS      float64    `json:"latency_ms"`
	ErrorClass     string     `json:"error_class"`
	Error          string     `json:"error"`
	ResponseBody   string     `json:"response_body"`
	State          string     `json:"state"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	Test           bool       `json:"test"`
}

// outcome is an attempt's result in a few words: the HTTP status, or the
// class of failure and its message.
func (a attempt) outcome() string {
	s := ""
	if a.ResponseStatus != 0 {
		s = strconv.Itoa(a.ResponseStatus)
	}
	if a.ErrorClass != "" && a.ErrorClass != "none" {
		s = strings.TrimSpace(s + " " + a.ErrorClass)
	}
	if a.Error != "" {
		s += ": " + a.Error
	}
	return s
}

func (c *cmd) testEndpoint(args []string) error {
	fs := c.flagSet("endpoints test")
	body := map[string]any{}
	fs.Func("event-type", "the type sent", func(s string) error { body["event_type"] = s; return nil })
	fs.Func("data", "the event's data (JSON)", func(s string) error {
		if !json.Valid([]byte(s)) {
			return fmt.Errorf("not JSON")
		}
		body["data"] = json.RawMessage(s)
		return nil
	})
	pos, cl, asJSON, err := c.prepare(fs, args, "ID")
	if err != nil {
		return err
	}
	var res struct {
		OK bool `json:"ok"`
		attempt
	}
	raw, err := cl.call(c.ctx, http.MethodPost, apiPath("/v1/endpoints", pos[0], "test"), body, &res)
	if err != nil {
		return err
	}
	if asJSON {
		err = c.printJSON(raw)
	} else {
		var k kv
		verdict := "failed"
		if res.OK {
			verdict = "ok"
		}
		k.add("result", verdict)
		k.add("event", res.EventID+" ("+res.EventType+")")
		k.add("outcome", res.outcome())
		k.add("latency", fmt.Sprintf("%.1f ms", res.LatencyMS))
		k.add("response body", res.ResponseBody)
		err = k.write(c.std.Out)
	}
	if err == nil && !res.OK {
		return errReported
	}
	return err
}

func (c *cmd) rotateSecret(args []string) error {
	fs := c.flagSet("endpoints rotate-secret")
	body := map[string]any{}
	fs.Func("secret", "the new secret", func(s string) error { body["secret"] = s; return nil })
	fs.Func("grace", "how long the old secret keeps signing", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration (24h, 90m, 0)")
		}
		body["grace_period_seconds"] = int(d / time.Second)
		return nil
	})
	pos, cl, asJSON, err := c.prepare(fs, args, "ID")
	if err != nil {
		return err
	}
	var s struct {
		Secret     string `json:"secret"`
		Signature  string `json:"signature"`
		PublicKey  string `json:"public_key"`
		OldSecrets []struct {
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"old_secrets"`
	}
	raw, err := cl.call(c.ctx, http.MethodPost, apiPath("/v1/endpoints", pos[0], "secret", "rotate"), body, &s)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(raw)
	}
	var k kv
	k.add("signature", s.Signature)
	k.add("secret", s.Secret)
	k.add("public key", s.PublicKey)
	for _, o := range s.OldSecrets {
		k.add("old secret", "signs until "+timeOf(o.ExpiresAt))
	}
	return k.write(c.std.Out)
}
