package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/valid"
)

// Secret rotation limits.
const (
	defaultGracePeriod = 24 * time.Hour
	maxGracePeriod     = 30 * 24 * time.Hour
	// maxOldSecrets bounds how many previous secrets sign at once.
	maxOldSecrets = 5
)

// rotateInput is the optional body of POST /v1/endpoints/{id}/secret/rotate.
type rotateInput struct {
	// Secret is the new secret; generated when absent.
	Secret *string `json:"secret"`
	// GracePeriodSeconds is how long the previous secret keeps signing
	// alongside the new one (default 86400; 0 drops it at once).
	GracePeriodSeconds *int `json:"grace_period_seconds"`
}

type oldSecretView struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// secretView shows an endpoint's signing secret to the tenant that owns it
// (for ed25519, the public key: the private key never leaves Herald), and
// when the previous ones stop signing (never their values).
type secretView struct {
	Secret     string          `json:"secret,omitempty"`
	Signature  sign.Scheme     `json:"signature"`
	PublicKey  string          `json:"public_key,omitempty"`
	OldSecrets []oldSecretView `json:"old_secrets"`
}

func viewSecret(e store.Endpoint, now time.Time) secretView {
	v := secretView{Signature: e.Signature, OldSecrets: []oldSecretView{}}
	v.Secret, v.PublicKey = shownSecret(e)
	for _, o := range e.OldSecrets {
		if now.Before(o.ExpiresAt) {
			v.OldSecrets = append(v.OldSecrets, oldSecretView{ExpiresAt: o.ExpiresAt})
		}
	}
	return v
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) {
	e, err := s.store.GetEndpoint(r.Context(), tenantOf(r), r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err, "endpoint")
		return
	}
	writeJSON(w, http.StatusOK, viewSecret(e, time.Now()))
}

// rotateSecret starts signing with a new secret. Until the grace period
// ends every request carries signatures by both the new and the previous
// secret (Standard Webhooks allows several), so receivers can switch at
// their own pace. Jobs already queued are signed with the secrets live at
// their attempt.
func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request) {
	var in rotateInput
	if !decodeOptional(w, r, &in) {
		return
	}
	grace := defaultGracePeriod
	var errs valid.Errors
	if in.GracePeriodSeconds != nil {
		g := time.Duration(*in.GracePeriodSeconds) * time.Second
		if g < 0 || g > maxGracePeriod {
			errs.Add("grace_period_seconds", "must be between 0 and %d", int(maxGracePeriod/time.Second))
		}
		grace = g
	}
	if in.Secret != nil && *in.Secret == "" {
		errs.Add("secret", "must not be empty; leave it out to have one generated")
	}
	if invalid(w, r, errs.Err()) {
		return
	}
	now := time.Now().UTC()
	unsigned := false
	e, err := s.store.UpdateEndpoint(r.Context(), tenantOf(r), r.PathValue("id"), func(e *store.Endpoint) error {
		if e.Signature == sign.None {
			unsigned = true
			return errUnsigned
		}
		next := ""
		if in.Secret != nil {
			next = *in.Secret
		} else {
			g, err := sign.GenerateSecret(e.Signature)
			if err != nil {
				return err
			}
			next = g
		}
		old := e.OldSecrets[:0:0]
		for _, o := range e.OldSecrets {
			if now.Before(o.ExpiresAt) && o.Secret != next {
				old = append(old, o)
			}
		}
		if grace > 0 && e.Secret != "" && e.Secret != next {
			old = append(old, store.OldSecret{Secret: e.Secret, ExpiresAt: now.Add(grace)})
		}
		if len(old) > maxOldSecrets {
			old = slices.Clone(old[len(old)-maxOldSecrets:])
		}
		e.OldSecrets, e.Secret = old, next
		return nil
	})
	if unsigned {
		writeProblem(w, r, Problem{Type: problemBase + "conflict", Status: http.StatusConflict,
			Detail: "the endpoint sends unsigned requests (signature \"none\"): it has no secret to rotate"})
		return
	}
	if err != nil {
		s.storeError(w, r, err, "endpoint")
		return
	}
	s.changed(r)
	writeJSON(w, http.StatusOK, viewSecret(e, now))
}

// shownSecret is what of e's signing key its owner may see: a symmetric
// secret as it is, or for ed25519 the public key alone. An ed25519
// private key never leaves Herald once stored, not even in the answer that
// created it: receivers verify with the public key, and only Herald signs.
func shownSecret(e store.Endpoint) (secret, publicKey string) {
	if e.Signature != sign.Ed25519 {
		return e.Secret, ""
	}
	publicKey, _ = sign.PublicKey(e.Secret)
	return "", publicKey
}

type apiError string

func (e apiError) Error() string { return string(e) }

const errUnsigned = apiError("endpoint is unsigned")
