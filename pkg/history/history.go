// Package history is the attempt history: a projection of the ATTEMPTS,
// DLQ and EVENTS streams into query indexes, and the queries a settings
// page makes of them ("the last 50 failed attempts to this endpoint", "what
// became of event X").
//
// The streams are the record; the index is derived and disposable. Senders
// publish attempts asynchronously to ATTEMPTS, so writing history never
// slows sending, and losing the index (Redis flushed, restarted empty, or
// lost) loses no event and no attempt: the Projector notices the missing
// marker key, deletes its durable consumers and replays the streams, which
// keep HERALD_ATTEMPTS_RETENTION worth of attempts, to rebuild it.
//
// Index entries expire with the same retention. Writes are idempotent
// (attempt ids are derived from the attempt), so a replay or a redelivery
// rewrites what is there rather than duplicating it.
package history

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// Errors.
var (
	// ErrNotFound: no such event in the history of that tenant.
	ErrNotFound = errors.New("not found")
	// ErrBadCursor: a cursor that this index did not hand out.
	ErrBadCursor = errors.New("invalid cursor")
	// ErrUnavailable: the index cannot be read right now (Redis down).
	ErrUnavailable = errors.New("history index unavailable")
)

// DefaultRetention is how long attempts are kept when no retention is
// configured (HERALD_ATTEMPTS_RETENTION).
const DefaultRetention = 30 * 24 * time.Hour

// TestJobPrefix starts the job id of test sends (POST
// /v1/endpoints/{id}/test), which is how their attempts are told apart.
const TestJobPrefix = "test_"

// Status filters attempts by outcome.
type Status string

// Statuses.
const (
	StatusAll       Status = ""
	StatusSucceeded Status = "succeeded" // 2xx
	StatusFailed    Status = "failed"    // anything else
)

// Delivery states of an event at an endpoint.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateRetrying  = "retrying"
	StateDead      = "dead"
	// StateSkipped: not attempted because the endpoint was disabled;
	// recorded in the DLQ, from where recover brings it back.
	StateSkipped = "skipped"
	// StateHeld: the endpoint is paused; sent when it is resumed.
	StateHeld = "held"
)

// Attempt is one HTTP attempt as the history shows it.
type Attempt struct {
	ID             string     `json:"id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	EndpointID     string     `json:"endpoint_id"`
	Number         int        `json:"attempt"`
	At             time.Time  `json:"at"`
	Status         Status     `json:"status"`
	ResponseStatus int        `json:"response_status"`
	LatencyMS      float64    `json:"latency_ms"`
	ErrorClass     string     `json:"error_class"`
	Error          string     `json:"error,omitempty"`
	ResponseBody   string     `json:"response_body"`
	State          string     `json:"state"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	ReplayID       string     `json:"replay_id,omitempty"`
	Test           bool       `json:"test,omitempty"`
	// RequestHeaders are the headers sent, secrets masked (sender.SentHeaders).
	RequestHeaders map[string]string `json:"request_headers,omitempty"`
}

// DeadLetter is a job that went to the DLQ, as the history shows it. A job
// dead-lettered without an HTTP attempt (its endpoint was disabled) has
// only this, marked Skipped.
type DeadLetter struct {
	EndpointID string    `json:"endpoint_id"`
	EventID    string    `json:"event_id"`
	JobID      string    `json:"job_id"`
	ReplayID   string    `json:"replay_id,omitempty"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
	Skipped    bool      `json:"skipped,omitempty"`
}

// EventRecord is where an event is stored in EVENTS, so its body can be
// fetched by sequence rather than copied into the index.
type EventRecord struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	EndpointID string    `json:"endpoint_id,omitempty"`
	AcceptedAt time.Time `json:"accepted_at"`
	Seq        uint64    `json:"seq"`
}

// AttemptID derives an attempt's id from the attempt itself, so that the
// same record projected twice is written once.
func AttemptID(a *heraldv1.Attempt) string {
	h := sha256.New()
	for _, s := range [...]string{a.TenantId, a.JobId, a.ReplayId, a.EventId, a.EndpointId,
		strconv.FormatUint(uint64(a.Number), 10), strconv.FormatInt(a.AtUnixMs, 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "att_" + b32.EncodeToString(h.Sum(nil))[:26]
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// FromProto converts a wire attempt into its history view.
func FromProto(a *heraldv1.Attempt) Attempt {
	v := Attempt{
		ID:             AttemptID(a),
		EventID:        a.EventId,
		EventType:      a.EventType,
		EndpointID:     a.EndpointId,
		Number:         int(a.Number),
		At:             time.UnixMilli(a.AtUnixMs).UTC(),
		Status:         StatusFailed,
		ResponseStatus: int(a.StatusCode),
		LatencyMS:      float64(a.LatencyUs) / 1000,
		ErrorClass:     a.ErrorClass,
		Error:          a.Error,
		ResponseBody:   strings.ToValidUTF8(string(a.ResponseBody), string(utf8.RuneError)),
		State:          a.State,
		ReplayID:       a.ReplayId,
		Test:           strings.HasPrefix(a.JobId, TestJobPrefix),
		RequestHeaders: a.RequestHeaders,
	}
	if a.StatusCode >= 200 && a.StatusCode <= 299 {
		v.Status = StatusSucceeded
	}
	if v.ErrorClass == "" {
		v.ErrorClass = "none"
	}
	if a.NextAttemptAtUnixMs > 0 {
		t := time.UnixMilli(a.NextAttemptAtUnixMs).UTC()
		v.NextAttemptAt = &t
	}
	return v
}

// deadFromProto converts a wire dead letter into its history view.
func deadFromProto(d *heraldv1.DeadLetter) (tenant string, v DeadLetter, ok bool) {
	j := d.GetJob()
	if j == nil || j.Event == nil || j.TenantId == "" || j.EndpointId == "" {
		return "", v, false
	}
	return j.TenantId, DeadLetter{
		EndpointID: j.EndpointId, EventID: j.Event.Id, JobID: j.Id, ReplayID: j.ReplayId,
		Reason: d.Reason, At: time.UnixMilli(d.DeadAtUnixMs).UTC(), Skipped: d.Skipped,
	}, true
}

// Query selects a page of an endpoint's attempts, newest first.
type Query struct {
	Status Status
	Limit  int
	Cursor string
	// Since and Until bound the attempts' time, both inclusive; zero
	// leaves that side open.
	Since, Until time.Time
	// Keep, when set, selects the attempts shown (by event type, say).
	// The index has no such filter: Reader.Attempts reads past the ones
	// it drops, at most MaxScan per page, so a page may hold fewer than
	// Limit attempts and still have a next cursor.
	Keep func(Attempt) bool
}

// MaxScan bounds the attempts one page reads when Query.Keep drops some:
// a filter that matches rarely answers a short page in bounded time rather
// than reading an endpoint's whole history.
const MaxScan = 2000

// Counts is how an endpoint's attempts went over a period.
type Counts struct {
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// Page is a page of attempts; NextCursor is empty on the last page.
type Page struct {
	Attempts   []Attempt
	NextCursor string
}

// cursor is the position after which a page continues: the score (time in
// ms) and member (attempt id) of the last item shown. It is opaque to
// clients.
type cursor struct {
	Score  int64
	Member string
}

func (c cursor) encode() string {
	return base64URL.EncodeToString([]byte(strconv.FormatInt(c.Score, 10) + "|" + c.Member))
}

// CheckCursor reports ErrBadCursor for a cursor no page handed out.
func CheckCursor(s string) error {
	if s == "" {
		return nil
	}
	_, err := decodeCursor(s)
	return err
}

func decodeCursor(s string) (cursor, error) {
	b, err := base64URL.DecodeString(s)
	if err != nil {
		return cursor{}, ErrBadCursor
	}
	score, member, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(score, 10, 64)
	if !ok || err != nil || member == "" {
		return cursor{}, ErrBadCursor
	}
	return cursor{Score: n, Member: member}, nil
}

func marshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
