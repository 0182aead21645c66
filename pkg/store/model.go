package store

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/match"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/valid"
)

// Tenant is one platform workspace: it owns endpoints, API keys and events.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// APIKey is a tenant's key as stored: only a hash of the key is kept, so a
// leaked store reveals no usable key.
type APIKey struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Hash      string    `json:"hash"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
}

// OldSecret is a previous signing secret kept live during a rotation's grace
// period, so receivers can switch to the new one without dropping requests.
type OldSecret struct {
	Secret    string    `json:"secret"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Endpoint is one registered webhook: where to send, what to send, and how.
// A change applies to jobs not yet attempted: senders read the endpoint at
// every attempt.
type Endpoint struct {
	ID            string            `json:"id"`
	TenantID      string            `json:"tenant_id"`
	Name          string            `json:"name"`
	Description   string            `json:"description,omitempty"`
	URL           string            `json:"url"`
	Events        []string          `json:"events"`
	Method        string            `json:"method"`
	ContentType   string            `json:"content_type"`
	Headers       map[string]string `json:"headers,omitempty"`
	Signature     sign.Scheme       `json:"signature"`
	PayloadFormat string            `json:"payload_format"`
	Secret        string            `json:"secret,omitempty"`
	OldSecrets    []OldSecret       `json:"old_secrets,omitempty"`
	Enabled       bool              `json:"enabled"`
	// Paused holds deliveries, in arrival order, until it is cleared: the
	// endpoint's owner asked for a break (maintenance, a migration), not
	// Herald, and nothing is skipped meanwhile.
	Paused      bool              `json:"paused,omitempty"`
	MaxAttempts int               `json:"max_attempts"`
	TimeoutMS   int               `json:"timeout_ms"`
	RateLimit   int               `json:"rate_limit"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// DisabledReason says why Herald disabled the endpoint by itself (a 410,
	// or failing for too long); empty when enabled or disabled by a person.
	DisabledReason string    `json:"disabled_reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Endpoint states, as the API shows them in "status".
const (
	// StatusActive: deliveries are sent.
	StatusActive = "active"
	// StatusPaused: deliveries are held, in arrival order, and sent when
	// the endpoint is active again (package hold).
	StatusPaused = "paused"
	// StatusDisabled: deliveries are not sent; each is recorded in the DLQ
	// as skipped, so recover brings them back once it is enabled.
	StatusDisabled = "disabled"
)

// Status is the endpoint's state. Disabled wins over paused: a paused
// endpoint that is then disabled skips what it would have held.
func (e *Endpoint) Status() string {
	switch {
	case !e.Enabled:
		return StatusDisabled
	case e.Paused:
		return StatusPaused
	default:
		return StatusActive
	}
}

// SetStatus puts the endpoint in state st (one of the Status constants).
// Leaving disabled, or being disabled by a person, clears DisabledReason,
// which only says why Herald disabled it by itself.
func (e *Endpoint) SetStatus(st string) {
	e.Enabled, e.Paused = st != StatusDisabled, st == StatusPaused
	e.DisabledReason = ""
}

// SkipReason is the reason recorded with a delivery skipped because the
// endpoint is disabled.
func (e *Endpoint) SkipReason() string {
	if e.DisabledReason == "" {
		return "endpoint disabled"
	}
	return "endpoint disabled (" + e.DisabledReason + ")"
}

// Limits and defaults of the endpoint model.
const (
	DefaultMaxAttempts = 5
	MinMaxAttempts     = 1
	MaxMaxAttempts     = 20
	DefaultTimeoutMS   = 10_000
	MinTimeoutMS       = 1_000
	MaxTimeoutMS       = 30_000
	ContentTypeJSON    = "application/json"
	ContentTypeForm    = "application/x-www-form-urlencoded"
	PayloadStandard    = "standard"
	PayloadRaw         = "raw"
)

// Live returns the secrets to sign with now: the current one last, preceded
// by old ones still in their grace period.
func (e *Endpoint) Live(now time.Time) []string {
	out := make([]string, 0, 1+len(e.OldSecrets))
	for _, o := range e.OldSecrets {
		if now.Before(o.ExpiresAt) {
			out = append(out, o.Secret)
		}
	}
	if e.Secret != "" {
		out = append(out, e.Secret)
	}
	return out
}

// Subscribes reports whether the endpoint wants an event of type typ.
func (e *Endpoint) Subscribes(typ string) bool { return match.Matches(e.Events, typ) }

// ApplyDefaults fills fields a client may omit.
func (e *Endpoint) ApplyDefaults() {
	if e.Method == "" {
		e.Method = http.MethodPost
	}
	if e.ContentType == "" {
		e.ContentType = ContentTypeJSON
	}
	if e.Signature == "" {
		e.Signature = sign.Standard
	}
	if e.PayloadFormat == "" {
		e.PayloadFormat = PayloadStandard
	}
	if e.MaxAttempts == 0 {
		e.MaxAttempts = DefaultMaxAttempts
	}
	if e.TimeoutMS == 0 {
		e.TimeoutMS = DefaultTimeoutMS
	}
}

// refusedHeaders may not be set as custom headers: hop-by-hop headers, those
// the HTTP client owns, and those that carry Herald's identity or signature.
var refusedHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true, "Content-Type": true, "User-Agent": true,
	"Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
	"X-Hub-Signature-256": true, "X-Hub-Signature": true, "X-Signature": true,
	"X-Herald-Delivery": true, "Herald-Attempt": true,
}

// Validate checks every field and reports all failures at once.
func (e *Endpoint) Validate() error {
	var errs valid.Errors
	if strings.TrimSpace(e.Name) == "" {
		errs.Add("name", "is required")
	} else if len(e.Name) > 200 {
		errs.Add("name", "must be at most 200 characters")
	} else if msg := valid.Text(e.Name, false); msg != "" {
		errs.Add("name", "%s", msg)
	}
	if len(e.Description) > 2000 {
		errs.Add("description", "must be at most 2000 characters")
	} else if msg := valid.Text(e.Description, true); msg != "" {
		errs.Add("description", "%s", msg)
	}
	if e.IsListen() {
		// Made by CreateListenEndpoint, and only ever its own.
		if e.URL != ListenURL(e.ID) {
			errs.Add("url", "must be an absolute http or https URL")
		}
	} else {
		validateURL(&errs, e.URL)
	}
	if len(e.Events) == 0 {
		errs.Add("events", "must not be empty: list event types, prefix.* wildcards, or *")
	}
	for i, f := range e.Events {
		if err := match.ValidateFilter(f); err != nil {
			errs.Add("events["+strconv.Itoa(i)+"]", "%q: %v", f, err)
		}
	}
	switch e.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		errs.Add("method", "must be POST, PUT or PATCH")
	}
	switch e.ContentType {
	case ContentTypeJSON, ContentTypeForm:
	default:
		errs.Add("content_type", "must be %s or %s", ContentTypeJSON, ContentTypeForm)
	}
	switch e.PayloadFormat {
	case PayloadStandard, PayloadRaw:
	default:
		errs.Add("payload_format", "must be standard or raw")
	}
	for k, v := range e.Headers {
		ck := http.CanonicalHeaderKey(k)
		switch {
		case !validHeaderName(k):
			errs.Add("headers."+k, "is not a valid header name")
		case refusedHeaders[ck]:
			errs.Add("headers."+k, "is set by Herald and cannot be overridden")
		case strings.ContainsAny(v, "\r\n\x00"):
			errs.Add("headers."+k, "value must not contain line breaks")
		case seal.IsSealed(v):
			errs.Add("headers."+k, "value must not start with %q (reserved for encrypted values)", seal.Prefix)
		}
	}
	if len(e.Headers) > 20 {
		errs.Add("headers", "at most 20 custom headers")
	}
	if _, err := sign.ParseScheme(string(e.Signature)); err != nil {
		errs.Add("signature", "%v", err)
	} else if e.Signature != sign.None {
		if e.Secret == "" {
			errs.Add("secret", "is required for signature %q (choose signature \"none\" explicitly to send unsigned)", e.Signature)
		} else if seal.IsSealed(e.Secret) {
			errs.Add("secret", "%v", seal.ErrReserved)
		} else if err := sign.ValidateSecret(e.Signature, e.Secret); err != nil {
			errs.Add("secret", "%v", err)
		}
	}
	if e.MaxAttempts < MinMaxAttempts || e.MaxAttempts > MaxMaxAttempts {
		errs.Add("max_attempts", "must be between %d and %d", MinMaxAttempts, MaxMaxAttempts)
	}
	if e.TimeoutMS < MinTimeoutMS || e.TimeoutMS > MaxTimeoutMS {
		errs.Add("timeout_ms", "must be between %d and %d", MinTimeoutMS, MaxTimeoutMS)
	}
	if e.RateLimit < 0 || e.RateLimit > 100_000 {
		errs.Add("rate_limit", "must be between 0 (no limit) and 100000 requests per second")
	}
	if len(e.Metadata) > 50 {
		errs.Add("metadata", "at most 50 keys")
	}
	return errs.Err()
}

func validateURL(errs *valid.Errors, raw string) {
	if raw == "" {
		errs.Add("url", "is required")
		return
	}
	if len(raw) > 2048 {
		errs.Add("url", "must be at most 2048 characters")
		return
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		errs.Add("url", "must be an absolute http or https URL")
		return
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			errs.Add("url", "port %s is out of range: a port is from 1 to 65535", p)
		}
	}
	if u.User != nil {
		errs.Add("url", "must not carry credentials; use a custom header instead")
	}
	if u.Fragment != "" {
		errs.Add("url", "must not have a fragment")
	}
}

func validHeaderName(k string) bool {
	if k == "" || len(k) > 100 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
