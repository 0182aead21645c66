package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/match"
	"github.com/heraldhq/herald/pkg/session"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/valid"
)

// Sessions signs and checks portal session tokens (session.Signer).
type Sessions interface {
	Sign(c session.Claims, now time.Time, ttl time.Duration) (string, session.Claims, error)
	Verify(token string, now time.Time) (session.Claims, error)
}

// WithSessions enables the webhooks portal's sessions: POST
// /v1/portal/sessions signs them, and every tenant route takes a session
// token (hps_...) as well as an API key, within the session's scope.
// Without it, sessions answer 503.
func WithSessions(s Sessions) Option { return func(srv *Server) { srv.sessions = s } }

// WithPublicURL sets the URL the API is reached at (HERALD_PUBLIC_URL),
// from which portal links are made. Without it they are made from the
// request's Host, https when the request came over TLS or says so in
// X-Forwarded-Proto.
func WithPublicURL(u string) Option {
	return func(s *Server) { s.publicURL = strings.TrimRight(u, "/") }
}

// PortalPath is where the portal's page is served.
const PortalPath = "/portal"

// Limits of a session's scope, so that its token stays a few KiB: it
// travels in every request the portal makes.
const (
	maxSessionEndpoints  = 50
	maxSessionEventTypes = 50
	maxFrameAncestors    = 10
	maxThemeText         = 100
	maxLogoURL           = 512
)

// sessionRoutes are the routes a portal session may use: what the portal
// needs, and no more. Everything else (event intake, tenants, event type
// changes, resend, new sessions) answers 403 to a session.
var sessionRoutes = map[string]bool{
	"GET /v1/events/{id}":                   true,
	"POST /v1/endpoints":                    true,
	"GET /v1/endpoints":                     true,
	"GET /v1/endpoints/{id}":                true,
	"PATCH /v1/endpoints/{id}":              true,
	"DELETE /v1/endpoints/{id}":             true,
	"GET /v1/endpoints/{id}/secret":         true,
	"POST /v1/endpoints/{id}/secret/rotate": true,
	"POST /v1/endpoints/{id}/test":          true,
	"GET /v1/endpoints/{id}/attempts":       true,
	"GET /v1/attempts/stream":               true,
	"GET /v1/event-types":                   true,
	"GET /v1/event-types/{name}":            true,
	"GET /v1/dlq":                           true,
	"GET /v1/dlq/{id}":                      true,
	"POST /v1/dlq/replay":                   true,
	"GET /v1/dlq/replays":                   true,
	"GET /v1/dlq/replays/{id}":              true,
	"POST /v1/endpoints/{id}/recover":       true,
}

// scope is what a portal session may see; nil for an API key, which sees
// the whole tenant.
type scope struct {
	claims session.Claims
}

type scopeKey struct{}

// scopeOf returns the request's session scope, nil for an API key.
func scopeOf(r *http.Request) *scope {
	sc, _ := r.Context().Value(scopeKey{}).(*scope)
	return sc
}

// typeVisible reports whether events of type t may be shown.
func (sc *scope) typeVisible(t string) bool {
	return sc == nil || len(sc.claims.EventTypes) == 0 || match.Matches(sc.claims.EventTypes, t)
}

// filterCovered reports whether a subscription filter (exact, prefix.*,
// *) selects only types the scope may see.
func (sc *scope) filterCovered(f string) bool {
	if sc == nil || len(sc.claims.EventTypes) == 0 {
		return true
	}
	prefix, wild := strings.CutSuffix(f, "*")
	for _, a := range sc.claims.EventTypes {
		switch {
		case a == "*" || a == f:
			return true
		case !wild:
			if match.Matches([]string{a}, f) {
				return true
			}
		case strings.HasSuffix(a, ".*") && prefix != "" && strings.HasPrefix(prefix, strings.TrimSuffix(a, "*")):
			return true
		}
	}
	return false
}

// endpointVisible reports whether the session may see e: one of its
// endpoints if it names them, subscribed only to its types if it names
// them.
func (sc *scope) endpointVisible(e store.Endpoint) bool {
	if sc == nil {
		return true
	}
	if len(sc.claims.Endpoints) > 0 && !slices.Contains(sc.claims.Endpoints, e.ID) {
		return false
	}
	for _, f := range e.Events {
		if !sc.filterCovered(f) {
			return false
		}
	}
	return true
}

// endpointIDVisible is endpointVisible for an id alone; with an event type
// scope it reads the endpoint.
func (s *Server) endpointIDVisible(ctx context.Context, sc *scope, tenant, id string) (bool, error) {
	if sc == nil {
		return true, nil
	}
	if len(sc.claims.Endpoints) > 0 && !slices.Contains(sc.claims.Endpoints, id) {
		return false, nil
	}
	if len(sc.claims.EventTypes) == 0 {
		return true, nil
	}
	e, err := s.store.GetEndpoint(ctx, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil // the handler says it is not found
	}
	if err != nil {
		return false, err
	}
	return sc.endpointVisible(e), nil
}

// checkEvents reports subscription filters outside the session's types.
func (sc *scope) checkEvents(errs *valid.Errors, events *[]string) {
	if sc == nil || events == nil {
		return
	}
	for i, f := range *events {
		if !sc.filterCovered(f) {
			errs.Add(fmt.Sprintf("events[%d]", i), "is outside the event types this session may see (%s)", strings.Join(sc.claims.EventTypes, ", "))
		}
	}
}

// authenticateSession checks a session token and the route it is used
// on. It answers and returns false when the request may not go on.
func (s *Server) authenticateSession(w http.ResponseWriter, r *http.Request, token string) (*http.Request, bool) {
	if s.sessions == nil {
		s.refused(r, "portal session", token)
		unauthorized(w, r, "this deployment has no portal signing key: portal sessions are not accepted")
		return nil, false
	}
	c, err := s.sessions.Verify(token, time.Now())
	if err != nil {
		s.refused(r, "portal session", token)
		detail := "the portal session is not valid; open the portal again from the platform"
		if errors.Is(err, session.ErrExpired) {
			detail = "the portal session has expired; open the portal again from the platform"
		}
		unauthorized(w, r, detail)
		return nil, false
	}
	sc := &scope{claims: c}
	if !sessionRoutes[r.Pattern] {
		forbidden(w, r, "a portal session may not use this route")
		return nil, false
	}
	if c.ReadOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
		forbidden(w, r, "this portal session is read-only")
		return nil, false
	}
	if r.Pattern == "POST /v1/endpoints" && len(c.Endpoints) > 0 {
		forbidden(w, r, "this portal session sees only the endpoints it was opened for: it cannot create others")
		return nil, false
	}
	if id := r.PathValue("id"); id != "" && strings.Contains(r.Pattern, "/v1/endpoints/{id}") {
		ok, err := s.endpointIDVisible(r.Context(), sc, c.Tenant, id)
		if err != nil {
			s.storeError(w, r, err, "endpoint")
			return nil, false
		}
		if !ok {
			notFound(w, r, "endpoint")
			return nil, false
		}
	}
	ctx := context.WithValue(r.Context(), tenantKey{}, c.Tenant)
	return r.WithContext(context.WithValue(ctx, scopeKey{}, sc)), true
}

func forbidden(w http.ResponseWriter, r *http.Request, detail string) {
	writeProblem(w, r, Problem{Type: problemBase + "forbidden", Title: "Forbidden", Status: http.StatusForbidden, Detail: detail})
}

// sessionInput is the body of POST /v1/portal/sessions.
type sessionInput struct {
	TTLSeconds     *int           `json:"ttl_seconds"`
	EndpointIDs    []string       `json:"endpoint_ids"`
	EventTypes     []string       `json:"event_types"`
	ReadOnly       bool           `json:"read_only"`
	Theme          *session.Theme `json:"theme"`
	FrameAncestors []string       `json:"frame_ancestors"`
}

var colorRE = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// check reports every invalid field of a session request; endpoints that
// do not exist are checked by the caller.
func (in *sessionInput) check() (time.Duration, valid.Errors) {
	var errs valid.Errors
	ttl := session.DefaultTTL
	if in.TTLSeconds != nil {
		ttl = time.Duration(*in.TTLSeconds) * time.Second
		if ttl < session.MinTTL || ttl > session.MaxTTL {
			errs.Add("ttl_seconds", "must be from %d to %d", int(session.MinTTL/time.Second), int(session.MaxTTL/time.Second))
		}
	}
	if len(in.EndpointIDs) > maxSessionEndpoints {
		errs.Add("endpoint_ids", "may name at most %d endpoints", maxSessionEndpoints)
	}
	if len(in.EventTypes) > maxSessionEventTypes {
		errs.Add("event_types", "may name at most %d event types", maxSessionEventTypes)
	}
	for i, f := range in.EventTypes {
		if err := match.ValidateFilter(f); err != nil {
			errs.Add(fmt.Sprintf("event_types[%d]", i), "must be an event type, a prefix.* filter or *")
		}
	}
	if t := in.Theme; t != nil {
		if len(t.Name) > maxThemeText {
			errs.Add("theme.name", "must be at most %d bytes", maxThemeText)
		} else if msg := valid.Text(t.Name, false); msg != "" {
			errs.Add("theme.name", "%s", msg)
		}
		if t.LogoURL != "" {
			if u, err := url.Parse(t.LogoURL); err != nil || len(t.LogoURL) > maxLogoURL || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
				strings.ContainsAny(t.LogoURL, " ;,'\"") {
				errs.Add("theme.logo_url", "must be an http or https URL of at most %d bytes, without spaces, quotes, commas or semicolons", maxLogoURL)
			}
		}
		if t.PrimaryColor != "" && !colorRE.MatchString(t.PrimaryColor) {
			errs.Add("theme.primary_color", "must be a colour written #rrggbb")
		}
	}
	if len(in.FrameAncestors) > maxFrameAncestors {
		errs.Add("frame_ancestors", "may name at most %d origins", maxFrameAncestors)
	}
	for i, o := range in.FrameAncestors {
		if !validOrigin(o) {
			errs.Add(fmt.Sprintf("frame_ancestors[%d]", i), "must be an origin such as https://app.example.com or https://*.example.com (scheme, host and port only)")
		}
	}
	return ttl, errs
}

// validOrigin reports whether o is an origin CSP frame-ancestors takes as
// a host source: http or https, a host (optionally *. first), a port, and
// nothing else.
func validOrigin(o string) bool {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" ||
		strings.ContainsAny(o, " ;,'\"") || len(o) > 200 {
		return false
	}
	host := strings.TrimPrefix(u.Hostname(), "*.")
	return host != "" && !strings.Contains(host, "*")
}

// sessionView is the answer of POST /v1/portal/sessions.
type sessionView struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// createSession: POST /v1/portal/sessions signs a session for the
// tenant's customer and answers the portal's URL with it. Only an API key
// may open one: a session cannot extend itself.
func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var in sessionInput
	if !decodeOptional(w, r, &in) {
		return
	}
	if s.sessions == nil {
		unavailable(w, r, "this deployment has no portal signing key (HERALD_PORTAL_KEY)")
		return
	}
	ttl, errs := in.check()
	tenant := tenantOf(r)
	for i, id := range in.EndpointIDs {
		if _, err := s.store.GetEndpoint(r.Context(), tenant, id); errors.Is(err, store.ErrNotFound) {
			errs.Add(fmt.Sprintf("endpoint_ids[%d]", i), "is not an endpoint of this tenant")
		} else if err != nil {
			s.storeError(w, r, err, "endpoint")
			return
		}
	}
	if invalid(w, r, errs.Err()) {
		return
	}
	c := session.Claims{Tenant: tenant, Endpoints: in.EndpointIDs, EventTypes: in.EventTypes, ReadOnly: in.ReadOnly, FrameAncestors: in.FrameAncestors}
	if in.Theme != nil {
		c.Theme = *in.Theme
	}
	token, c, err := s.sessions.Sign(c, time.Now(), ttl)
	if err != nil {
		s.log.Error().Err(err).Str("tenant_id", tenant).Msg("portal session not signed")
		internal(w, r)
		return
	}
	s.log.Info().Str("tenant_id", tenant).Str("session_id", c.ID).Time("expires_at", c.Expires()).Bool("read_only", c.ReadOnly).Msg("portal session opened")
	writeJSON(w, http.StatusCreated, sessionView{ID: c.ID, URL: s.baseURL(r) + PortalPath + "?session=" + url.QueryEscape(token), ExpiresAt: c.Expires()})
}

// baseURL is where clients reach this API.
func (s *Server) baseURL(r *http.Request) string {
	if s.publicURL != "" {
		return s.publicURL
	}
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
