// Package event holds what producers send: the event input, its validation,
// and the ids Herald derives from it. It knows nothing of NATS or HTTP.
package event

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/pkg/match"
	"github.com/heraldhq/herald/pkg/strictjson"
	"github.com/heraldhq/herald/pkg/valid"
	"github.com/oklog/ulid/v2"
)

// MaxIDLength bounds producer-chosen ids (idempotency keys).
const MaxIDLength = 128

// Input is an event as a producer sends it, over HTTP (POST /v1/events) or
// straight to NATS (herald.events.<tenant>.<type>). Data is kept as the exact
// bytes sent, so a raw payload reaches receivers byte for byte.
type Input struct {
	ID         string          `json:"id,omitempty"`
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	EndpointID string          `json:"endpoint_id,omitempty"`
}

// ErrMalformed reports input that is not one valid JSON object of the
// expected shape.
var ErrMalformed = errors.New("malformed event")

// Parse decodes one event strictly and validates it. A wrong input never
// yields a half-filled Input with a nil error.
func Parse(b []byte) (Input, error) {
	in, err := Decode(b)
	if err != nil {
		return Input{}, err
	}
	return in, in.Validate()
}

// Decode reads one event strictly: unknown fields, trailing data and invalid
// UTF-8 are refused. It does not validate the fields. An event may hold
// megabytes of data: it is read in place, and Data is a slice of b, not a
// copy, so b must not change while the event is in use.
func Decode(b []byte) (Input, error) {
	var in Input
	if err := strictjson.Object(b, map[string]any{
		"id": &in.ID, "type": &in.Type, "data": &in.Data, "endpoint_id": &in.EndpointID,
	}); err != nil {
		return Input{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return in, nil
}

// Validate checks every field and reports all failures at once.
func (in Input) Validate() error {
	var errs valid.Errors
	if in.Type == "" {
		errs.Add("type", "is required")
	} else if err := match.ValidateType(in.Type); err != nil {
		errs.Add("type", "%v", err)
	}
	if len(bytes.TrimSpace(in.Data)) == 0 || bytes.Equal(bytes.TrimSpace(in.Data), []byte("null")) {
		errs.Add("data", "is required (any JSON value but null)")
	}
	if in.ID != "" {
		if err := ValidateID(in.ID); err != nil {
			errs.Add("id", "%v", err)
		}
	}
	if in.EndpointID != "" && !IsToken(in.EndpointID) {
		errs.Add("endpoint_id", "is not an endpoint id")
	}
	return errs.Err()
}

// ValidateID accepts producer ids of 1 to 128 printable ASCII characters
// without spaces: they travel in HTTP headers (webhook-id) unchanged.
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLength {
		return fmt.Errorf("must be 1 to %d characters", MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return errors.New("must be printable ASCII without spaces")
		}
	}
	return nil
}

// IsToken reports whether s can be used as one NATS subject token and in a
// URL path: Herald's own ids (tenants, endpoints) always are.
func IsToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NewID returns a new time-ordered id with the given prefix, e.g. "evt".
// ULIDs sort by creation time, which keeps listings and stream keys ordered;
// the monotonic entropy keeps ids made within one millisecond in order too.
func NewID(prefix string) string {
	return prefix + "_" + ulid.MustNew(ulid.Now(), idEntropy).String()
}

var idEntropy = &ulid.LockedMonotonicReader{MonotonicReader: ulid.Monotonic(rand.Reader, 0)}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// JobID is the delivery job id for (tenant, event, endpoint). It is derived,
// not random, so a router that handles the same event twice publishes the
// same job id and JetStream's dedupe stores it once.
func JobID(tenant, eventID, endpointID string) string {
	h := sha256.New()
	for _, s := range [...]string{tenant, eventID, endpointID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "job_" + b32.EncodeToString(h.Sum(nil))[:26]
}

// DerivedID names an event that arrived over NATS without an id: it is
// derived from where JetStream stored it, so every redelivery of that message
// carries the same id.
func DerivedID(stream string, seq uint64, storedUnixNano int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d", stream, seq, storedUnixNano)
	return "evt_" + b32.EncodeToString(h.Sum(nil))[:26]
}
