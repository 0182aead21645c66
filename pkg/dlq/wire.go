package dlq

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/match"
	"github.com/heraldhq/herald/pkg/valid"
)

// This file is the wire form shared by the HTTP API and its client: query
// parameters and request bodies, parsed with every invalid field reported.

// ParseTime reads an RFC 3339 time (fractional seconds allowed).
func ParseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// FormatTime writes t as the API does.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTimeField(errs *valid.Errors, field, v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := ParseTime(v)
	if err != nil {
		errs.Add(field, "must be an RFC 3339 time such as 2026-11-22T21:00:00Z")
	}
	return t
}

func (f Filter) validate(errs *valid.Errors) {
	if f.EndpointID != "" && !event.IsToken(f.EndpointID) {
		errs.Add("endpoint_id", "is not an endpoint id")
	}
	if f.EventType != "" {
		if err := match.ValidateFilter(f.EventType); err != nil {
			errs.Add("event_type", "%v", err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		errs.Add("until", "must not be before since")
	}
}

// EncodeCursor is the opaque next_cursor of a page starting at DLQ sequence
// seq.
func EncodeCursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("dlq:" + strconv.FormatUint(seq, 10)))
}

// DecodeCursor reads a cursor made by EncodeCursor.
func DecodeCursor(c string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, err
	}
	rest, ok := strings.CutPrefix(string(b), "dlq:")
	if !ok {
		return 0, errors.New("not a dead-letter cursor")
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	if err == nil && n == 0 {
		err = errors.New("cursor 0")
	}
	return n, err
}

// ParseQuery reads the parameters of GET /v1/dlq: endpoint_id, event_type,
// since, until (RFC 3339), limit (1 to 100, default 50) and cursor.
func ParseQuery(v url.Values) (Query, error) {
	var errs valid.Errors
	q := Query{Filter: Filter{EndpointID: v.Get("endpoint_id"), EventType: v.Get("event_type")}}
	q.Since = parseTimeField(&errs, "since", v.Get("since"))
	q.Until = parseTimeField(&errs, "until", v.Get("until"))
	q.validate(&errs)
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			errs.Add("limit", "must be a whole number from 1 to %d", MaxLimit)
		}
		q.Limit = n
	}
	if s := v.Get("cursor"); s != "" {
		n, err := DecodeCursor(s)
		if err != nil {
			errs.Add("cursor", "is not a cursor from a previous page's next_cursor")
		}
		q.Cursor = n
	}
	return q, errs.Err()
}

// Values is q as query parameters.
func (q Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("endpoint_id", q.EndpointID)
	set("event_type", q.EventType)
	if !q.Since.IsZero() {
		v.Set("since", FormatTime(q.Since))
	}
	if !q.Until.IsZero() {
		v.Set("until", FormatTime(q.Until))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Cursor > 0 {
		v.Set("cursor", EncodeCursor(q.Cursor))
	}
	return v
}

// ReplayInput is the body of POST /v1/dlq/replay: one dead letter ("id"),
// a list ("ids"), or all matching a filter ("endpoint_id", "event_type",
// "since", "until"; or "all": true for every dead letter of the tenant),
// at "rate" jobs per second (default 50).
type ReplayInput struct {
	ID         *uint64  `json:"id,omitempty"`
	IDs        []uint64 `json:"ids,omitempty"`
	EndpointID string   `json:"endpoint_id,omitempty"`
	EventType  string   `json:"event_type,omitempty"`
	Since      string   `json:"since,omitempty"`
	Until      string   `json:"until,omitempty"`
	All        bool     `json:"all,omitempty"`
	Rate       int      `json:"rate,omitempty"`
}

// Request parses and checks the input, reporting every invalid field.
func (in ReplayInput) Request() (ReplayRequest, error) {
	var errs valid.Errors
	var req ReplayRequest
	req.Rate = in.Rate
	if in.Rate < 0 || in.Rate > MaxRate {
		errs.Add("rate", "must be from 1 to %d jobs per second", MaxRate)
	}
	byID := in.ID != nil || in.IDs != nil
	f := Filter{EndpointID: in.EndpointID, EventType: in.EventType}
	f.Since = parseTimeField(&errs, "since", in.Since)
	f.Until = parseTimeField(&errs, "until", in.Until)
	byFilter := in.All || in.EndpointID != "" || in.EventType != "" || in.Since != "" || in.Until != ""
	switch {
	case byID && byFilter:
		errs.Add("id", "replay by id or by filter, not both")
	case byID:
		if in.ID != nil {
			req.IDs = append(req.IDs, *in.ID)
		}
		req.IDs = append(req.IDs, in.IDs...)
		if len(req.IDs) == 0 {
			errs.Add("ids", "must list at least one dead letter id")
		}
	case byFilter:
		f.validate(&errs)
		req.Filter = &f
	default:
		errs.Add("id", `name what to replay: "id", "ids", a filter ("endpoint_id", "event_type", "since", "until"), or "all": true`)
	}
	if err := errs.Err(); err != nil {
		return ReplayRequest{}, err
	}
	return req, req.validate()
}

// validate checks a request built in code as well as from the wire.
func (req ReplayRequest) validate() error {
	var errs valid.Errors
	if req.Rate < 0 || req.Rate > MaxRate {
		errs.Add("rate", "must be from 1 to %d jobs per second", MaxRate)
	}
	switch {
	case req.Filter != nil && len(req.IDs) > 0:
		errs.Add("id", "replay by id or by filter, not both")
	case req.Filter != nil:
		req.Filter.validate(&errs)
	case len(req.IDs) == 0:
		errs.Add("ids", "must list at least one dead letter id")
	case len(req.IDs) > MaxReplayIDs:
		errs.Add("ids", "at most %d ids per replay; replay by filter for more", MaxReplayIDs)
	}
	for _, id := range req.IDs {
		if id == 0 {
			errs.Add("ids", "0 is not a dead letter id")
			break
		}
	}
	return errs.Err()
}

// RecoverInput is the body of POST /v1/endpoints/{id}/recover.
type RecoverInput struct {
	Since string `json:"since"`
	Until string `json:"until,omitempty"`
	Rate  int    `json:"rate,omitempty"`
}

// Parse checks the input: since is required.
func (in RecoverInput) Parse() (since, until time.Time, rate int, err error) {
	var errs valid.Errors
	if in.Since == "" {
		errs.Add("since", "is required: recover resends what died since this time")
	}
	since = parseTimeField(&errs, "since", in.Since)
	until = parseTimeField(&errs, "until", in.Until)
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		errs.Add("until", "must not be before since")
	}
	if in.Rate < 0 || in.Rate > MaxRate {
		errs.Add("rate", "must be from 1 to %d jobs per second", MaxRate)
	}
	return since, until, in.Rate, errs.Err()
}

// ResendInput is the body of POST /v1/events/{id}/resend: one endpoint, or
// (empty) every enabled endpoint that wants the event.
type ResendInput struct {
	EndpointID string `json:"endpoint_id,omitempty"`
}
