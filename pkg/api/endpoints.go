package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/valid"
)

// endpointInput is the body of POST /v1/endpoints and PATCH
// /v1/endpoints/{id}. Pointers tell "absent" from "zero", so a PATCH changes
// exactly the fields it names.
type endpointInput struct {
	Name          *string            `json:"name"`
	Description   *string            `json:"description"`
	URL           *string            `json:"url"`
	Events        *[]string          `json:"events"`
	Method        *string            `json:"method"`
	ContentType   *string            `json:"content_type"`
	Headers       *map[string]string `json:"headers"`
	Signature     *string            `json:"signature"`
	PayloadFormat *string            `json:"payload_format"`
	Secret        *string            `json:"secret"`
	Enabled       *bool              `json:"enabled"`
	Paused        *bool              `json:"paused"`
	Status        *string            `json:"status"`
	MaxAttempts   *int               `json:"max_attempts"`
	TimeoutMS     *int               `json:"timeout_ms"`
	RateLimit     *int               `json:"rate_limit"`
	Metadata      *map[string]string `json:"metadata"`
}

func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// check reports what is wrong with the request itself, before the stored
// endpoint is read: conflicting state fields, header values copied from a
// listing's masks.
func (in *endpointInput) check() error {
	var errs valid.Errors
	in.state(&errs)
	checkNotMasked(&errs, in.Headers)
	checkNotListenURL(&errs, in.URL)
	return errs.Err()
}

// apply copies the fields present in in onto e (check passed).
func (in *endpointInput) apply(e *store.Endpoint) {
	set(&e.Name, in.Name)
	set(&e.Description, in.Description)
	set(&e.URL, in.URL)
	set(&e.Events, in.Events)
	set(&e.Method, in.Method)
	set(&e.ContentType, in.ContentType)
	set(&e.Headers, in.Headers)
	if in.Signature != nil {
		e.Signature = sign.Scheme(*in.Signature)
	}
	set(&e.PayloadFormat, in.PayloadFormat)
	set(&e.Secret, in.Secret)
	var ignored valid.Errors // check reported them
	in.state(&ignored).apply(e, in)
	set(&e.MaxAttempts, in.MaxAttempts)
	set(&e.TimeoutMS, in.TimeoutMS)
	// An explicit 0 is out of range, not a request for the default: keep
	// it out of ApplyDefaults' reach so that Validate reports it.
	if in.MaxAttempts != nil && *in.MaxAttempts == 0 {
		e.MaxAttempts = -1
	}
	if in.TimeoutMS != nil && *in.TimeoutMS == 0 {
		e.TimeoutMS = -1
	}
	set(&e.RateLimit, in.RateLimit)
	set(&e.Metadata, in.Metadata)
}

// endpointView is an endpoint as the API shows it. One endpoint's own views
// (create, read, change) show the tenant that owns it its symmetric secret
// and its custom header values, as a settings page reveals them; listings
// show neither, header values masked. An ed25519 endpoint's private key is
// never shown, not even on create: public_key is what receivers need.
// Old secrets are never shown.
type endpointView struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Description    string            `json:"description,omitempty"`
	URL            string            `json:"url"`
	Events         []string          `json:"events"`
	Method         string            `json:"method"`
	ContentType    string            `json:"content_type"`
	Headers        map[string]string `json:"headers"`
	Signature      sign.Scheme       `json:"signature"`
	PayloadFormat  string            `json:"payload_format"`
	Secret         string            `json:"secret,omitempty"`
	PublicKey      string            `json:"public_key,omitempty"`
	Status         string            `json:"status"`
	Enabled        bool              `json:"enabled"`
	DisabledReason string            `json:"disabled_reason,omitempty"`
	Backlog        *backlogView      `json:"backlog,omitempty"`
	Recent         *recentView       `json:"recent,omitempty"`
	MaxAttempts    int               `json:"max_attempts"`
	TimeoutMS      int               `json:"timeout_ms"`
	RateLimit      int               `json:"rate_limit"`
	Metadata       map[string]string `json:"metadata"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

// viewEndpoint shows e: as one endpoint's own view when own, else as a
// listing item.
func viewEndpoint(e store.Endpoint, own bool) endpointView {
	v := endpointView{
		ID: e.ID, Name: e.Name, Description: e.Description, URL: e.URL, Events: e.Events, Method: e.Method,
		ContentType: e.ContentType, Headers: e.Headers, Signature: e.Signature, PayloadFormat: e.PayloadFormat,
		Status: e.Status(), Enabled: e.Enabled, DisabledReason: e.DisabledReason, MaxAttempts: e.MaxAttempts,
		TimeoutMS: e.TimeoutMS, RateLimit: e.RateLimit, Metadata: e.Metadata, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
	v.Secret, v.PublicKey = shownSecret(e)
	if !own {
		v.Secret = ""
		v.Headers = maskHeaders(e.Headers)
	}
	if v.Headers == nil {
		v.Headers = map[string]string{}
	}
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	return v
}

func (s *Server) changed(r *http.Request) {
	if s.invalidator != nil {
		s.invalidator.Invalidate(r.Context(), tenantOf(r))
	}
}

// refusedURL answers 422 on field "url" when the egress check refuses the
// URL a request sets, and reports whether it did. Only policy refusals are
// answered here; a malformed URL is left to the endpoint's validation,
// which reports it along with every other invalid field.
func (s *Server) refusedURL(w http.ResponseWriter, r *http.Request, raw *string) bool {
	if s.urlCheck == nil || raw == nil {
		return false
	}
	err := s.urlCheck(r.Context(), *raw)
	if err == nil || !errors.Is(err, deliver.ErrBlocked) {
		return false
	}
	var errs valid.Errors
	var be *egress.BlockedError
	if errors.As(err, &be) {
		errs.Add("url", "is not allowed: %v; Herald does not deliver to loopback, private, link-local or other internal addresses unless the operator allows them", err)
	} else {
		errs.Add("url", "is not allowed: %v", err) // a numeric host: the error says what to write instead
	}
	return invalid(w, r, errs.Err())
}

// scopeCheck reports what of in a portal session may not set: events
// outside its types.
func scopeCheck(r *http.Request, in *endpointInput) error {
	var errs valid.Errors
	scopeOf(r).checkEvents(&errs, in.Events)
	return errs.Err()
}

func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request) {
	var in endpointInput
	if !decode(w, r, &in) || invalid(w, r, in.check()) || invalid(w, r, scopeCheck(r, &in)) || s.refusedURL(w, r, in.URL) {
		return
	}
	e := store.Endpoint{Enabled: true}
	in.apply(&e)
	e, err := s.store.CreateEndpoint(r.Context(), tenantOf(r), e)
	if err != nil {
		s.storeError(w, r, err, "tenant")
		return
	}
	s.changed(r)
	w.Header().Set("Location", "/v1/endpoints/"+e.ID)
	v := viewEndpoint(e, true)
	if s.backlogs != nil {
		v.Backlog = &backlogView{} // new: nothing held yet
	}
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	limit, after, ok := listQuery(w, r)
	if !ok {
		return
	}
	p, err := s.store.EndpointsPage(r.Context(), tenantOf(r), after, limit)
	if err != nil {
		s.storeError(w, r, err, "endpoints")
		return
	}
	sc := scopeOf(r)
	out := make([]endpointView, 0, len(p.Items))
	for _, e := range p.Items {
		if sc.endpointVisible(e) {
			out = append(out, viewEndpoint(e, false))
		}
	}
	s.withBacklogs(r, out)
	s.withRecent(r, out)
	var next string
	if p.More {
		next = idCursor(p.Items[len(p.Items)-1].ID)
	}
	writeJSON(w, http.StatusOK, newPage(out, next))
}

func (s *Server) getEndpoint(w http.ResponseWriter, r *http.Request) {
	e, err := s.store.GetEndpoint(r.Context(), tenantOf(r), r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err, "endpoint")
		return
	}
	v := viewEndpoint(e, true)
	s.withBacklog(r, &v)
	one := []endpointView{v}
	s.withRecent(r, one)
	writeJSON(w, http.StatusOK, one[0])
}

func (s *Server) patchEndpoint(w http.ResponseWriter, r *http.Request) {
	var in endpointInput
	if !decode(w, r, &in) || invalid(w, r, in.check()) || invalid(w, r, scopeCheck(r, &in)) || s.refusedURL(w, r, in.URL) {
		return
	}
	e, err := s.store.UpdateEndpoint(r.Context(), tenantOf(r), r.PathValue("id"), func(e *store.Endpoint) error {
		if e.IsListen() && in.URL != nil && *in.URL != e.URL {
			var errs valid.Errors
			errs.Add("url", "a herald listen endpoint keeps its URL; create an endpoint for another URL")
			return errs.Err()
		}
		in.apply(e)
		return nil
	})
	if err != nil {
		s.storeError(w, r, err, "endpoint")
		return
	}
	s.changed(r)
	v := viewEndpoint(e, true)
	s.withBacklog(r, &v)
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteEndpoint(r.Context(), tenantOf(r), r.PathValue("id")); err != nil {
		s.storeError(w, r, err, "endpoint")
		return
	}
	s.changed(r)
	w.WriteHeader(http.StatusNoContent)
}
