package sender

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// HeaderAttempt carries the 1-based attempt number on every request.
const HeaderAttempt = "Herald-Attempt"

// Body returns the exact bytes sent for an event to an endpoint: the
// Standard Webhooks envelope {"type","timestamp","data"} or the producer's
// data as sent ("raw"), form-encoded as payload=<json> when the endpoint
// asks for application/x-www-form-urlencoded. The producer's data is copied,
// never re-encoded, so it arrives byte for byte.
func Body(ep *store.Endpoint, ev *heraldv1.Event, data []byte) []byte {
	var body []byte
	if ep.PayloadFormat == store.PayloadRaw {
		body = data
	} else {
		ts := time.UnixMilli(ev.AcceptedAtUnixMs).UTC().Format(time.RFC3339Nano)
		body = make([]byte, 0, len(data)+len(ev.Type)+len(ts)+40)
		body = append(body, `{"type":`...)
		body = strconv.AppendQuote(body, ev.Type)
		body = append(body, `,"timestamp":"`...)
		body = append(body, ts...)
		body = append(body, `","data":`...)
		body = append(body, data...)
		body = append(body, '}')
	}
	if ep.ContentType == store.ContentTypeForm {
		return []byte(url.Values{"payload": {string(body)}}.Encode())
	}
	return body
}

// Build makes the signed request for one attempt. Every scheme signs the
// exact body bytes; webhook-timestamp is the time of this attempt, so a
// retry hours later still passes receivers' replay tolerance.
func Build(ep *store.Endpoint, ev *heraldv1.Event, data []byte, attempt int, now time.Time) (deliver.Request, error) {
	body := Body(ep, ev, data)
	h := make(http.Header, 8+len(ep.Headers))
	for k, v := range ep.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", ep.ContentType)
	h.Set(sign.HeaderID, ev.Id)
	h.Set(sign.HeaderTimestamp, sign.FormatTimestamp(now))
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
	// A nil Idempotency-Key is not sent, but tells net/http the request may
	// be retried on a keep-alive connection the receiver closed: delivery is
	// at least once and receivers dedupe on webhook-id anyway.
	h["Idempotency-Key"] = nil
	if ep.Signature != sign.None {
		// One Signer per (scheme, live secrets), reused across attempts.
		s, err := sign.Cached(ep.Signature, ep.Live(now)...)
		if err != nil {
			return deliver.Request{}, err
		}
		if err := s.Sign(h, sign.Message{ID: ev.Id, Timestamp: now, Body: body}); err != nil {
			return deliver.Request{}, err
		}
	}
	return deliver.Request{
		Method:  ep.Method,
		URL:     ep.URL,
		Header:  h,
		Body:    body,
		Timeout: time.Duration(ep.TimeoutMS) * time.Millisecond,
	}, nil
}
