package listen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go"
)

// ErrNotListening is the failure of an attempt while no `herald listen`
// CLI is connected for its endpoint.
var ErrNotListening = errors.New("no herald listen is connected for this endpoint")

// Transport is the http.RoundTripper of listen:// URLs (give it to
// deliver.WithProtocol): it sends the request to the endpoint's relay over
// NATS and returns the CLI's answer as the response. The request's context
// (the attempt's timeout) bounds the wait.
type Transport struct {
	nc *nats.Conn
}

// NewTransport returns the Transport that sends requests over nc.
func NewTransport(nc *nats.Conn) *Transport { return &Transport{nc: nc} }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	id := req.URL.Host
	if id == "" {
		return nil, errors.New("listen URL has no endpoint id")
	}
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
	}
	ctx := req.Context()
	in := Request{Method: req.Method, Header: req.Header, Body: body}
	if d, ok := ctx.Deadline(); ok {
		in.Deadline = d
	}
	data, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(Subject(id))
	msg.Data = data
	if !in.Deadline.IsZero() {
		msg.Header.Set(headerDeadline, strconv.FormatInt(in.Deadline.UnixMilli(), 10))
	}
	reply, err := t.nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, ErrNotListening
	case ctx.Err() != nil:
		// The attempt's deadline: deliver classifies it as a timeout.
		return nil, fmt.Errorf("waiting for herald listen: %w", ctx.Err())
	case err != nil:
		return nil, fmt.Errorf("herald listen: %w", err)
	}
	var out Response
	if err := json.Unmarshal(reply.Data, &out); err != nil {
		return nil, fmt.Errorf("herald listen answered what it should not: %w", err)
	}
	if out.Error != "" {
		return nil, fmt.Errorf("herald listen could not reach its local server: %s", out.Error)
	}
	if out.Status < 100 || out.Status > 999 {
		return nil, fmt.Errorf("herald listen answered status %d", out.Status)
	}
	if out.Header == nil {
		out.Header = http.Header{}
	}
	return &http.Response{
		Status:        strconv.Itoa(out.Status) + " " + http.StatusText(out.Status),
		StatusCode:    out.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        out.Header,
		Body:          io.NopCloser(bytes.NewReader(out.Body)),
		ContentLength: int64(len(out.Body)),
		Request:       req,
	}, nil
}

// Listening reports whether a relay serves endpoint id now: a CLI has its
// stream open.
func Listening(ctx context.Context, nc *nats.Conn, id string) (bool, error) {
	msg := nats.NewMsg(Subject(id))
	msg.Header.Set(headerPing, "1")
	_, err := nc.RequestMsgWithContext(ctx, msg)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, nats.ErrNoResponders):
		return false, nil
	default:
		return false, err
	}
}
