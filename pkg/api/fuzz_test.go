package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/strictjson"
	"github.com/heraldhq/herald/pkg/valid"
)

var fuzzSealer = func() *seal.Sealer {
	s, err := seal.New(bytes.Repeat([]byte{9}, seal.KeySize))
	if err != nil {
		panic(err)
	}
	return s
}()

// FuzzEndpointInput feeds arbitrary bodies to the endpoint routes' decoding
// (POST, then a PATCH on top) and store.Endpoint.Validate: nothing panics,
// refusals are 400 details or field errors, and an accepted endpoint
// round-trips through its stored JSON, through sealing, and through the
// API's own input format. Seeds live in testdata/fuzz/FuzzEndpointInput.
func FuzzEndpointInput(f *testing.F) {
	f.Fuzz(func(t *testing.T, create, patch []byte) {
		e, ok := fuzzCreate(t, create)
		if !ok {
			return
		}
		checkRoundTrips(t, e)

		// A PATCH applies its fields onto the stored endpoint.
		var in endpointInput
		if err := strictjson.Decode(patch, &in); err != nil {
			return
		}
		in.apply(&e)
		e.ApplyDefaults()
		if err := e.Validate(); err != nil {
			checkFieldErrors(t, patch, err)
			return
		}
		checkRoundTrips(t, e)
	})
}

// fuzzCreate is POST /v1/endpoints without the store: decode, defaults, a
// generated secret when none is given, validation.
func fuzzCreate(t *testing.T, body []byte) (store.Endpoint, bool) {
	var in endpointInput
	if err := strictjson.Decode(body, &in); err != nil {
		if err.Error() == "" {
			t.Fatalf("strictjson.Decode(%q): empty error", body)
		}
		return store.Endpoint{}, false
	}
	if !utf8.Valid(body) {
		t.Fatalf("strictjson.Decode accepted invalid UTF-8 %q", body)
	}
	if err := in.check(); err != nil {
		checkFieldErrors(t, body, err)
		return store.Endpoint{}, false
	}
	e := store.Endpoint{Enabled: true}
	in.apply(&e)
	e.ApplyDefaults()
	if e.Secret == "" && e.Signature != sign.None {
		if s, err := sign.GenerateSecret(e.Signature); err == nil {
			e.Secret = s
		}
	}
	if err := e.Validate(); err != nil {
		checkFieldErrors(t, body, err)
		return store.Endpoint{}, false
	}
	return e, true
}

func checkFieldErrors(t *testing.T, body []byte, err error) {
	var ve valid.Errors
	if !errors.As(err, &ve) || len(ve) == 0 {
		t.Fatalf("Validate of %q: %T %v is not a list of field errors", body, err, err)
	}
}

func checkRoundTrips(t *testing.T, e store.Endpoint) {
	t.Helper()
	// As stored: JSON out and back.
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("marshal %+v: %v", e, err)
	}
	var stored store.Endpoint
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatalf("unmarshal stored %s: %v", b, err)
	}
	sameEndpoint(t, "stored JSON", e, stored)
	if err := stored.Validate(); err != nil {
		t.Fatalf("stored copy of a valid endpoint is invalid: %v\n%s", err, b)
	}

	// Sealed as in KV and Redis, then opened.
	sealed, err := store.SealEndpoint(fuzzSealer, e, "endpoint.tn.ep")
	if err != nil {
		t.Fatalf("seal %q: %v", e.Secret, err)
	}
	if e.Secret != "" && (sealed.Secret == e.Secret || !seal.IsSealed(sealed.Secret)) {
		t.Fatalf("secret %q not sealed: %q", e.Secret, sealed.Secret)
	}
	if err := store.OpenEndpoint(fuzzSealer, &sealed, "endpoint.tn.ep"); err != nil {
		t.Fatalf("open: %v", err)
	}
	sameEndpoint(t, "sealed", e, sealed)

	// As the API's input: every field set, decoded strictly, applied.
	sig := string(e.Signature)
	in := endpointInput{Name: &e.Name, Description: &e.Description, URL: &e.URL, Events: &e.Events, Method: &e.Method,
		ContentType: &e.ContentType, Headers: &e.Headers, Signature: &sig, PayloadFormat: &e.PayloadFormat, Secret: &e.Secret,
		Enabled: &e.Enabled, Paused: &e.Paused, MaxAttempts: &e.MaxAttempts, TimeoutMS: &e.TimeoutMS, RateLimit: &e.RateLimit, Metadata: &e.Metadata}
	ib, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var again endpointInput
	if err := strictjson.Decode(ib, &again); err != nil {
		t.Fatalf("the API refuses its own input %s: %v", ib, err)
	}
	back := store.Endpoint{Enabled: true}
	again.apply(&back)
	back.ApplyDefaults()
	if err := back.Validate(); err != nil {
		t.Fatalf("re-sent input %s is invalid: %v", ib, err)
	}
	e.DisabledReason = back.DisabledReason
	sameEndpoint(t, "API input", e, back)

	if _, err := json.Marshal(viewEndpoint(e, true)); err != nil {
		t.Fatalf("view: %v", err)
	}
}

func sameEndpoint(t *testing.T, how string, want, got store.Endpoint) {
	t.Helper()
	norm := func(e store.Endpoint) store.Endpoint {
		if len(e.Headers) == 0 {
			e.Headers = nil
		}
		if len(e.Metadata) == 0 {
			e.Metadata = nil
		}
		if len(e.OldSecrets) == 0 {
			e.OldSecrets = nil
		}
		return e
	}
	if w, g := norm(want), norm(got); !reflect.DeepEqual(w, g) {
		t.Fatalf("%s round trip changed the endpoint:\nwant %+v\ngot  %+v", how, w, g)
	}
}
