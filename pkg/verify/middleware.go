package verify

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/heraldhq/herald/pkg/sign"
)

// MaxBodyBytes is the largest body Middleware reads. The whole body must be
// in memory to check its signature, so an unbounded read would let anyone
// exhaust the receiver's memory before being rejected.
const MaxBodyBytes = 10 << 20

// Middleware returns middleware that verifies each request with scheme and
// secrets (see NewVerifier) before calling the next handler. It reads the
// body, at most MaxBodyBytes, and gives the next handler an r.Body that
// reads the same bytes again.
//
// A request that fails verification gets 401 Unauthorized, a larger body 413
// Request Entity Too Large, and a body that cannot be read 400 Bad Request;
// the reason is not sent back, so a forger learns nothing from it.
//
// Middleware panics if scheme or secrets are invalid, as http.Handle panics
// on a bad pattern: it is set up once at start, where failing loudly is
// right. Use NewVerifier to get an error instead.
func Middleware(scheme sign.Scheme, secrets []string, opts ...Option) func(http.Handler) http.Handler {
	v, err := NewVerifier(scheme, secrets, opts...)
	if err != nil {
		panic(err)
	}
	return func(next http.Handler) http.Handler {
		if scheme == sign.None {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var body []byte
			if r.Body != nil {
				var err error
				body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
				if err != nil {
					if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
						http.Error(w, http.StatusText(http.StatusRequestEntityTooLarge), http.StatusRequestEntityTooLarge)
						return
					}
					http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
					return
				}
			}
			if err := v.Verify(r.Header, body); err != nil {
				http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r)
		})
	}
}
