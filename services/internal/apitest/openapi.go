package apitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Validator checks exchanges with Herald's API against its OpenAPI
// description (pkg/api.OpenAPI, docs/openapi.yaml), with kin-openapi, a
// validator of its own that has never seen Herald's code. A suite that
// sends its requests through Transport fails on any request or answer the
// description does not describe, so the description cannot drift from
// what the API does.
type Validator struct {
	router routers.Router
	opts   *openapi3filter.Options
	// unread is opts for a request whose body is not checked.
	unread *openapi3filter.Options
}

// maxCheckedBody is the largest request body Transport reads to check it.
// A larger one (events of megabytes, sent to measure intake) is streamed
// as the caller sends it: reading it first would change what is measured
// and hold it all in the test's memory. Its route, parameters and answer
// are still checked.
const maxCheckedBody = 1 << 20

// NewValidator loads and validates the description spec (YAML or JSON).
func NewValidator(spec []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI description: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("the OpenAPI description is invalid: %w", err)
	}
	// The description's servers name the all-in-one's usual address; a
	// suite's Herald listens wherever it was started.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI description: %w", err)
	}
	opts := openapi3filter.Options{
		IncludeResponseStatus: true, // an answer's status must be listed
		MultiError:            true,
		AuthenticationFunc:    bearerPresent,
	}
	unread := opts
	unread.ExcludeRequestBody = true
	return &Validator{router: router, opts: &opts, unread: &unread}, nil
}

// bearerPresent is what the description's security schemes (http bearer)
// require of a request: a Bearer token. Whether it is the right one is the
// API's business, and a wrong one answers 401, which is described.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return nil
	}
	tok, ok := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(tok) == "" {
		return errors.New("no Bearer token")
	}
	return nil
}

// Check checks one exchange: req as sent with its body, and the answer's
// status, header and body. It returns what the description does not
// describe, or nil:
//   - a route (method and path) it lacks;
//   - a request it refuses (a parameter, the body, a missing token) that
//     the API did not refuse: a request answered with a 4xx is a test of
//     that refusal, and may well break the description;
//   - an answer whose status the operation does not list, or whose headers
//     or body do not match what it lists for that status.
func (v *Validator) Check(ctx context.Context, req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	return v.check(ctx, req, reqBody, v.opts, status, header, body)
}

// check is Check with the request's options: v.unread leaves the request
// body out.
func (v *Validator) check(ctx context.Context, req *http.Request, reqBody []byte, opts *openapi3filter.Options, status int, header http.Header, body []byte) error {
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		return fmt.Errorf("the description has no such operation: %w", err)
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	var errs []error
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && (status < 400 || status >= 500) {
		errs = append(errs, fmt.Errorf("the description refuses the request, the API answered %d: %w", status, err))
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("the answer does not match the description: %w", err))
	}
	return errors.Join(errs...)
}

// Transport returns an http.RoundTripper that sends through next
// (http.DefaultTransport when nil) and checks every exchange with Check,
// calling report with each mismatch, the request and the answer's status
// named. The answer is handed on unchanged: report decides what a
// mismatch does to the test (testing.T's Errorf fails it and lets it go
// on). Bodies are read whole, so that both can be checked, but for
// request bodies over maxCheckedBody.
func (v *Validator) Transport(next http.RoundTripper, report func(error)) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{next: next, rt: func(req *http.Request) (*http.Response, error) {
		var sent []byte
		opts := v.opts
		switch {
		case req.ContentLength > maxCheckedBody:
			opts = v.unread
		case req.Body != nil && req.Body != http.NoBody:
			var err error
			sent, err = io.ReadAll(req.Body)
			_ = req.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("read the request body: %w", err)
			}
			req = req.Clone(req.Context())
			req.Body = io.NopCloser(bytes.NewReader(sent))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(sent)), nil }
		}
		resp, err := next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		answer, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			// Hand on what came and the error; an answer cut short is not
			// the description's fault.
			resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(answer), errReader{err}))
			return resp, nil
		}
		resp.Body = io.NopCloser(bytes.NewReader(answer))
		if err := v.check(req.Context(), req, sent, opts, resp.StatusCode, resp.Header, answer); err != nil {
			report(fmt.Errorf("%s %s answered %d %s: %w", req.Method, req.URL.RequestURI(), resp.StatusCode, shorten(answer), err))
		}
		return resp, nil
	}}
}

// transport is Transport's http.RoundTripper.
type transport struct {
	next http.RoundTripper
	rt   func(*http.Request) (*http.Response, error)
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) { return t.rt(r) }

// CloseIdleConnections closes next's, as http.Client.CloseIdleConnections
// expects of its transport.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// shorten cuts an answer for a message.
func shorten(b []byte) string {
	if len(b) > shownBody {
		return string(b[:shownBody]) + "…"
	}
	return string(b)
}
