package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/heraldhq/herald/pkg/listen"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/valid"
)

// Listener carries deliveries to `herald listen` CLIs (*listen.Relay).
type Listener interface {
	// Serve relays the requests of listen endpoint id to fn until ctx ends.
	// ready is called once requests reach it.
	Serve(ctx context.Context, id string, ready func(), fn func(listen.Request) error) error
	// Respond hands a CLI's answer to the attempt that waits for it, or
	// returns listen.ErrNotWaiting.
	Respond(ctx context.Context, id string, resp listen.Response) error
}

// ListenStore makes `herald listen` endpoints (*store.Store).
type ListenStore interface {
	CreateListenEndpoint(ctx context.Context, tenant string, e store.Endpoint) (store.Endpoint, error)
}

// WithListener serves `herald listen`: POST /v1/listen, GET
// /v1/endpoints/{id}/listen and POST /v1/endpoints/{id}/listen/responses.
// Without it, those routes answer 503.
func WithListener(l Listener) Option { return func(s *Server) { s.listener = l } }

// defaultListenName names a listen endpoint created without a name.
const defaultListenName = "herald listen"

// checkNotListenURL refuses a listen:// URL in a request: Herald makes
// those (POST /v1/listen), and each names its own endpoint only.
func checkNotListenURL(errs *valid.Errors, raw *string) {
	if raw != nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(*raw)), store.ListenScheme+":") {
		errs.Add("url", "listen:// URLs are made by herald listen (POST /v1/listen), not set")
	}
}

// createListen makes a temporary endpoint whose deliveries go to the
// caller's `herald listen` over the stream of GET
// /v1/endpoints/{id}/listen. The body is an endpoint's, without url.
func (s *Server) createListen(w http.ResponseWriter, r *http.Request) {
	var in endpointInput
	if !decode(w, r, &in) {
		return
	}
	ls, ok := s.store.(ListenStore)
	if !ok || s.listener == nil {
		unavailable(w, r, "this process does not serve herald listen")
		return
	}
	var errs valid.Errors
	if in.URL != nil {
		errs.Add("url", "is set by Herald for a listen endpoint; leave it out")
	}
	if invalid(w, r, errs.Err()) || invalid(w, r, in.check()) {
		return
	}
	e := store.Endpoint{Enabled: true, Name: defaultListenName, Events: []string{"*"}}
	in.apply(&e)
	e, err := ls.CreateListenEndpoint(r.Context(), tenantOf(r), e)
	if err != nil {
		s.storeError(w, r, err, "tenant")
		return
	}
	s.changed(r)
	w.Header().Set("Location", "/v1/endpoints/"+e.ID)
	writeJSON(w, http.StatusCreated, viewEndpoint(e, true))
}

// listenEndpoint is the tenant's listen endpoint of the request's path,
// or false once the answer is written.
func (s *Server) listenEndpoint(w http.ResponseWriter, r *http.Request) (store.Endpoint, bool) {
	if s.listener == nil {
		unavailable(w, r, "this process does not serve herald listen")
		return store.Endpoint{}, false
	}
	e, err := s.store.GetEndpoint(r.Context(), tenantOf(r), r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err, "endpoint")
		return e, false
	}
	if !e.IsListen() {
		writeProblem(w, r, Problem{Type: problemBase + "not-a-listen-endpoint", Title: "Not a listen endpoint", Status: http.StatusConflict,
			Detail: "this endpoint delivers to its URL; herald listen makes its own endpoints (POST /v1/listen)"})
		return e, false
	}
	return e, true
}

// streamListen relays the deliveries of a listen endpoint to the CLI as
// server-sent events: a "ready" event once deliveries reach the stream,
// then one "request" event per attempt, its data a
// listen.Request (method, headers, base64 body, deadline), to be sent to
// the local server as it is and answered through POST
// /v1/endpoints/{id}/listen/responses before its deadline.
func (s *Server) streamListen(w http.ResponseWriter, r *http.Request) {
	e, ok := s.listenEndpoint(w, r)
	if !ok {
		return
	}
	s.serveEvents(w, r, "the listen stream ended; reconnect", func(ctx context.Context, send func(event, id string, v any)) error {
		ready := func() { send("ready", e.ID, map[string]string{"endpoint_id": e.ID}) }
		return s.listener.Serve(ctx, e.ID, ready, func(req listen.Request) error {
			send("request", req.ID, req)
			return nil
		})
	})
}

// respondListen takes a CLI's answer to one relayed request: the local
// server's status, headers and body, or the error that kept it from
// answering. It becomes the attempt's outcome.
func (s *Server) respondListen(w http.ResponseWriter, r *http.Request) {
	var resp listen.Response
	if !decode(w, r, &resp) {
		return
	}
	e, ok := s.listenEndpoint(w, r)
	if !ok {
		return
	}
	var errs valid.Errors
	if resp.RequestID == "" {
		errs.Add("request_id", "is required")
	}
	switch {
	case resp.Error != "" && resp.Status != 0:
		errs.Add("status", "must be left out when error is set")
	case resp.Error == "" && (resp.Status < 100 || resp.Status > 599):
		errs.Add("status", "must be an HTTP status from 100 to 599, or error must say why there is none")
	}
	if len(resp.Body) > listen.MaxResponseBody {
		errs.Add("body", "must be at most %d bytes; send the start of the body", listen.MaxResponseBody)
	}
	if invalid(w, r, errs.Err()) {
		return
	}
	switch err := s.listener.Respond(r.Context(), e.ID, resp); {
	case errors.Is(err, listen.ErrNotWaiting):
		writeProblem(w, r, Problem{Type: problemBase + "answer-too-late", Title: "Answer too late", Status: http.StatusGone,
			Detail: "no attempt waits for this answer any more: it timed out, and it is retried on the endpoint's schedule"})
	case err != nil:
		s.log.Error().Err(err).Str("endpoint_id", e.ID).Msg("listen answer not handed over")
		unavailable(w, r, "the answer could not be handed over; the attempt is retried on the endpoint's schedule")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
