package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

var eventCommands = []command{
	{name: "events send", synopsis: "--type TYPE (--data JSON | --data-file FILE) [flags]", api: true,
		summary: "Sends an event; it is stored when this answers. An id sent again within\nthe duplicate window stores nothing new (\"duplicate\").",
		help: "  --type TYPE         the event's type (post.published)\n" +
			"  --data JSON         its data, any JSON value but null\n" +
			"  --data-file FILE    its data from a file (\"-\": stdin)\n" +
			"  --id ID             its id, the idempotency key (default: one is made)\n" +
			"  --endpoint ID       deliver to this endpoint alone, if it wants the type\n",
		run: (*cmd).sendEvent},
	{name: "events get", synopsis: "ID", api: true,
		summary: "Shows an event and what became of it at each endpoint: pending, held,\ndelivered, retrying, dead or skipped, with the attempts.",
		run:     (*cmd).getEvent},
	{name: "attempts list", synopsis: "--endpoint ID [--status failed|succeeded] [flags]", api: true,
		summary: "Lists an endpoint's delivery attempts, newest first (test sends too).",
		help: "  --endpoint ID       the endpoint (required)\n" +
			"  --status STATUS     failed or succeeded (default: both)\n" + pageHelp,
		run: (*cmd).listAttempts},
}

func (c *cmd) sendEvent(args []string) error {
	fs := c.flagSet("events send")
	var in struct {
		ID         string          `json:"id,omitempty"`
		Type       string          `json:"type"`
		Data       json.RawMessage `json:"data,omitempty"`
		EndpointID string          `json:"endpoint_id,omitempty"`
	}
	fs.StringVar(&in.Type, "type", "", "the event's type")
	fs.StringVar(&in.ID, "id", "", "the event's id")
	fs.StringVar(&in.EndpointID, "endpoint", "", "deliver to this endpoint alone")
	data := fs.String("data", "", "the event's data")
	dataFile := fs.String("data-file", "", "the event's data from a file")
	_, cl, asJSON, err := c.prepare(fs, args)
	if err != nil {
		return err
	}
	switch {
	case in.Type == "":
		return usagef("--type is required")
	case (*data == "") == (*dataFile == ""):
		return usagef("give the data with --data or --data-file (one of them)")
	case *data != "":
		in.Data = json.RawMessage(*data)
	default:
		if in.Data, err = readFile(*dataFile, c.std.In); err != nil {
			return err
		}
	}
	if !json.Valid(in.Data) {
		return usagef("the data is not JSON")
	}
	var res struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	raw, err := cl.call(c.ctx, http.MethodPost, "/v1/events", in, &res)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(raw)
	}
	if res.Duplicate {
		fmt.Fprintf(c.std.Out, "Event %s was stored before: nothing new stored (duplicate).\n", res.ID)
	} else {
		fmt.Fprintf(c.std.Out, "Event %s stored; follow it with: herald events get %s\n", res.ID, res.ID)
	}
	return nil
}

func (c *cmd) getEvent(args []string) error {
	pos, cl, asJSON, err := c.prepare(c.flagSet("events get"), args, "ID")
	if err != nil {
		return err
	}
	var ev struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		EndpointID string          `json:"endpoint_id"`
		AcceptedAt *time.Time      `json:"accepted_at"`
		Data       json.RawMessage `json:"data"`
		Deliveries []struct {
			EndpointID    string     `json:"endpoint_id"`
			State         string     `json:"state"`
			NextAttemptAt *time.Time `json:"next_attempt_at"`
			Reason        string     `json:"reason"`
			Attempts      []attempt  `json:"attempts"`
		} `json:"deliveries"`
	}
	raw, err := cl.call(c.ctx, http.MethodGet, apiPath("/v1/events", pos[0]), nil, &ev)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(raw)
	}
	var k kv
	k.add("id", ev.ID)
	k.add("type", ev.Type)
	k.add("endpoint", ev.EndpointID)
	if ev.AcceptedAt != nil {
		k.add("accepted", timeOf(*ev.AcceptedAt))
	}
	if string(ev.Data) != "null" {
		k.add("data", string(ev.Data))
	}
	if err := k.write(c.std.Out); err != nil {
		return err
	}
	if len(ev.Deliveries) == 0 {
		fmt.Fprintln(c.std.Out, "\nNo endpoint wants it.")
		return nil
	}
	fmt.Fprintln(c.std.Out)
	t := table{head: []string{"ENDPOINT", "STATE", "TRIES", "LAST"}, cut: []int{3}}
	for _, d := range ev.Deliveries {
		last := d.Reason
		if n := len(d.Attempts); n > 0 && last == "" {
			a := d.Attempts[n-1]
			last = a.outcome() + " " + ageOf(a.At, c.now()) + " ago"
		}
		if d.NextAttemptAt != nil {
			last += "; next at " + timeOf(*d.NextAttemptAt)
		}
		t.add(d.EndpointID, d.State, strconv.Itoa(len(d.Attempts)), last)
	}
	return t.write(c.std.Out)
}

func (c *cmd) listAttempts(args []string) error {
	fs := c.flagSet("attempts list")
	var pf pageFlags
	pf.register(fs)
	ep := fs.String("endpoint", "", "the endpoint")
	status := fs.String("status", "", "failed or succeeded")
	_, cl, asJSON, err := c.prepare(fs, args)
	if err != nil {
		return err
	}
	if *ep == "" {
		return usagef("--endpoint is required")
	}
	q := pf.query()
	if *status != "" {
		q.Set("status", *status)
	}
	p, err := cl.list(c.ctx, apiPath("/v1/endpoints", *ep, "attempts"), q, pf.all)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(p)
	}
	t := table{head: []string{"AGE", "EVENT", "#", "STATE", "LATENCY", "OUTCOME"}, cut: []int{1, 5}}
	for _, raw := range p.Data {
		var a attempt
		if err := json.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("an attempt in the answer is not what herald expects: %w", err)
		}
		state := a.State
		if a.Test {
			state = "test"
		}
		t.add(ageOf(a.At, c.now()), a.EventID, strconv.Itoa(a.Number), state, fmt.Sprintf("%.0fms", a.LatencyMS), a.outcome())
	}
	if err := t.write(c.std.Out); err != nil {
		return err
	}
	c.morePages(p, "attempts")
	return nil
}
