// Package listen carries deliveries to `herald listen` endpoints: a
// developer runs `herald listen --forward-to http://localhost:3000/hook`,
// and their local server receives the tenant's events, signed as any
// endpoint's are, with no inbound port and no tunnel.
//
// The path of one attempt:
//
//	sender ──NATS request──▶ Relay (in an API process) ──SSE──▶ CLI ──HTTP──▶ local server
//	sender ◀──NATS reply──── Relay ◀──NATS request── API ◀──POST──  CLI ◀────── its answer
//
// A listen endpoint is an ordinary endpoint whose URL is listen://<its id>
// (store.CreateListenEndpoint), so routing, the per-endpoint cap, retries,
// the history and the dead-letter queue treat it as any other. The sender's
// HTTP client sends listen:// requests through Transport, a RoundTripper
// that makes a NATS request on Subject(id) instead of a connection. The API
// process that holds the CLI's server-sent event stream serves that subject
// (Relay.Serve) and relays each request down the stream; the CLI forwards
// it, and posts the local server's answer back to any API process, which
// hands it to the relay holding the request (Relay.Respond). The answer
// becomes the attempt's outcome. When no CLI is connected, NATS answers "no
// responders" at once and the attempt fails as a connection failure, to be
// retried on the endpoint's schedule like any other.
//
// The Sweeper deletes listen endpoints nobody has listened to for a grace
// period, so a CLI that was killed leaves nothing behind for long.
package listen

import (
	"net/http"
	"time"
)

// subjectPrefix starts every subject of this package. No stream captures
// it: requests and replies are core NATS, as short-lived as the attempt.
const subjectPrefix = "herald.listen."

// Subject is where the requests of listen endpoint id are sent.
func Subject(id string) string { return subjectPrefix + id }

// replySubject is where API processes hand a CLI's answers to the relay of
// endpoint id.
func replySubject(id string) string { return subjectPrefix + id + ".reply" }

// queue is the queue group of relays: when two streams are open for one
// endpoint (a CLI reconnecting), each request goes to one of them.
const queue = "herald-listen"

// Header names on the NATS messages.
const (
	// headerPing marks the Sweeper's question "is anyone listening?",
	// answered by a relay without bothering the CLI.
	headerPing = "Herald-Listen-Ping"
	// headerDeadline is when the attempt gives up (Unix ms), so the relay
	// and the CLI do not work on for an answer nobody waits for.
	headerDeadline = "Herald-Listen-Deadline"
)

// Request is one attempt as the CLI receives it: the signed request the
// sender built, to be sent to the local server as it is.
type Request struct {
	// ID names the request in the CLI's answer (Response.RequestID).
	ID     string      `json:"id"`
	Method string      `json:"method"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
	// Deadline is when the attempt times out; an answer after it is late.
	Deadline time.Time `json:"deadline,omitzero"`
}

// Response is the local server's answer, or why there is none.
type Response struct {
	RequestID string      `json:"request_id"`
	Status    int         `json:"status,omitempty"`
	Header    http.Header `json:"header,omitempty"`
	Body      []byte      `json:"body,omitempty"`
	// Error says why the CLI has no answer (the local server refused the
	// connection, timed out); the attempt then fails as a connection
	// failure with this text.
	Error string `json:"error,omitempty"`
}

// MaxResponseBody is how much of the local server's body a Response
// carries: the history keeps only its first KiB anyway, and the answer must fit the
// API's 64 KiB management body limit once base64-encoded.
const MaxResponseBody = 16 << 10
