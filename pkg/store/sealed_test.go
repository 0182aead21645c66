package store_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
)

func sealer(t *testing.T, cur byte, old ...byte) *seal.Sealer {
	t.Helper()
	var olds [][]byte
	for _, o := range old {
		olds = append(olds, bytes.Repeat([]byte{o}, seal.KeySize))
	}
	s, err := seal.New(bytes.Repeat([]byte{cur}, seal.KeySize), olds...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jsOnly connects to a fresh server; stores are opened on it with
// reopen, as processes with different keys would.
func jsOnly(t *testing.T) jetstream.JetStream {
	t.Helper()
	js := testenv.JetStream(t)
	return js
}

func reopen(t *testing.T, js jetstream.JetStream, opts ...store.Option) *store.Store {
	t.Helper()
	st, err := store.Open(testCtx(t), js, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// rawEndpoint is the endpoint's bytes as stored in KV, and every revision
// the bucket still holds.
func rawEndpoint(t *testing.T, st *store.Store, tenant, id string) (string, []string) {
	t.Helper()
	key := store.EndpointKey(tenant, id)
	e, err := st.KV().Get(testCtx(t), key)
	if err != nil {
		t.Fatalf("kv get %s: %v", key, err)
	}
	hist, err := st.KV().History(testCtx(t), key)
	if err != nil {
		t.Fatalf("kv history %s: %v", key, err)
	}
	var revs []string
	for _, h := range hist {
		revs = append(revs, string(h.Value()))
	}
	return string(e.Value()), revs
}

// rotate makes the current secret an old one in its grace period and sets
// a new current one, as the API's rotation does.
func rotate(t *testing.T, st *store.Store, tenant, id, next string) store.Endpoint {
	t.Helper()
	e, err := st.UpdateEndpoint(testCtx(t), tenant, id, func(e *store.Endpoint) error {
		e.OldSecrets = append(e.OldSecrets, store.OldSecret{Secret: e.Secret, ExpiresAt: time.Now().Add(time.Hour)})
		e.Secret = next
		return nil
	})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	return e
}

const (
	secretA = "whsec_c2VjcmV0LW51bWJlci1vbmUtZm9yLWhlcmFsZA=="
	secretB = "whsec_c2Vjb25kLXNlY3JldC1mb3ItaGVyYWxkLXRlc3Q="
)

func TestSecretsSealedAtRest(t *testing.T) {
	js := jsOnly(t)
	sl := sealer(t, 1)
	st := reopen(t, js, store.WithSealer(sl))
	tn, _ := mustTenant(t, st, "acme")
	ep := mustEndpoint(t, st, tn.ID, func(e *store.Endpoint) { e.Secret = secretA })
	if ep.Secret != secretA {
		t.Fatalf("CreateEndpoint returned secret %q, want the plaintext", ep.Secret)
	}
	rotated := rotate(t, st, tn.ID, ep.ID, secretB)
	if rotated.Secret != secretB || len(rotated.OldSecrets) != 1 || rotated.OldSecrets[0].Secret != secretA {
		t.Fatalf("UpdateEndpoint returned %q / %+v, want plaintext", rotated.Secret, rotated.OldSecrets)
	}

	raw, revs := rawEndpoint(t, st, tn.ID, ep.ID)
	for _, r := range append(revs, raw) {
		if strings.Contains(r, secretA) || strings.Contains(r, secretB) || strings.Contains(r, "c2Vj") {
			t.Fatalf("a secret is stored in clear: %s", r)
		}
	}
	if n := strings.Count(raw, `"enc:v1:`+sl.KeyID()+`:`); n != 2 {
		t.Fatalf("stored record has %d values sealed under %s, want 2 (secret, old secret): %s", n, sl.KeyID(), raw)
	}

	// Every read path returns plaintext.
	got, err := st.GetEndpoint(testCtx(t), tn.ID, ep.ID)
	if err != nil || got.Secret != secretB || got.OldSecrets[0].Secret != secretA {
		t.Fatalf("GetEndpoint = %q %+v, %v", got.Secret, got.OldSecrets, err)
	}
	if live := got.Live(time.Now()); len(live) != 2 || live[0] != secretA || live[1] != secretB {
		t.Fatalf("Live = %q", live)
	}
	list, err := st.ListEndpoints(testCtx(t), tn.ID)
	if err != nil || len(list) != 1 || list[0].Secret != secretB || list[0].OldSecrets[0].Secret != secretA {
		t.Fatalf("ListEndpoints = %+v, %v", list, err)
	}
	page, err := st.EndpointsPage(testCtx(t), tn.ID, "", 10)
	if err != nil || len(page.Items) != 1 || page.Items[0].Secret != secretB {
		t.Fatalf("EndpointsPage = %+v, %v", page, err)
	}
	// Generated secrets are sealed too.
	gen := mustEndpoint(t, st, tn.ID)
	if !strings.HasPrefix(gen.Secret, sign.SecretPrefix) {
		t.Fatalf("generated secret %q", gen.Secret)
	}
	if raw, _ := rawEndpoint(t, st, tn.ID, gen.ID); strings.Contains(raw, gen.Secret) {
		t.Fatalf("generated secret stored in clear: %s", raw)
	}
}

func TestPlaintextRecordsReadAndAreSealedOnWrite(t *testing.T) {
	js := jsOnly(t)
	plain := reopen(t, js)
	tn, _ := mustTenant(t, plain, "acme")
	ep := mustEndpoint(t, plain, tn.ID, func(e *store.Endpoint) { e.Secret = secretA })
	if raw, _ := rawEndpoint(t, plain, tn.ID, ep.ID); !strings.Contains(raw, secretA) {
		t.Fatalf("without a sealer the secret is stored as given; got %s", raw)
	}

	st := reopen(t, js, store.WithSealer(sealer(t, 1)))
	got, err := st.GetEndpoint(testCtx(t), tn.ID, ep.ID)
	if err != nil || got.Secret != secretA {
		t.Fatalf("plaintext record read with a sealer: %q, %v", got.Secret, err)
	}
	if _, err := st.UpdateEndpoint(testCtx(t), tn.ID, ep.ID, func(e *store.Endpoint) error { e.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	if raw, _ := rawEndpoint(t, st, tn.ID, ep.ID); strings.Contains(raw, secretA) || !strings.Contains(raw, `"enc:v1:`) {
		t.Fatalf("the next write did not seal the secret: %s", raw)
	}
	// A process without the key refuses the sealed record: it must never
	// sign with the ciphertext, or send unsigned.
	_, err = plain.GetEndpoint(testCtx(t), tn.ID, ep.ID)
	if !errors.Is(err, seal.ErrNoKey) || !errors.Is(err, store.ErrSealed) {
		t.Fatalf("store without a key read a sealed record: %v, want ErrNoKey", err)
	}
}

func TestUnknownKeyFailsLoudly(t *testing.T) {
	js := jsOnly(t)
	old := sealer(t, 1)
	st := reopen(t, js, store.WithSealer(old))
	tn, _ := mustTenant(t, st, "acme")
	ep := mustEndpoint(t, st, tn.ID, func(e *store.Endpoint) { e.Secret = secretA })

	rotatedKey := reopen(t, js, store.WithSealer(sealer(t, 2)))
	_, err := rotatedKey.GetEndpoint(testCtx(t), tn.ID, ep.ID)
	if !errors.Is(err, seal.ErrUnknownKey) || !errors.Is(err, store.ErrSealed) || !strings.Contains(err.Error(), old.KeyID()) {
		t.Fatalf("GetEndpoint under an unknown key: %v; want ErrUnknownKey naming key %s", err, old.KeyID())
	}
	if strings.Contains(err.Error(), secretA) {
		t.Fatalf("error quotes the secret: %v", err)
	}
	if _, err := rotatedKey.ListEndpoints(testCtx(t), tn.ID); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("ListEndpoints under an unknown key: %v", err)
	}
	if _, err := rotatedKey.UpdateEndpoint(testCtx(t), tn.ID, ep.ID, func(*store.Endpoint) error { return nil }); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("UpdateEndpoint under an unknown key: %v", err)
	}

	// With the old key configured it reads, and a write moves it to the
	// new key.
	both := reopen(t, js, store.WithSealer(sealer(t, 2, 1)))
	if got, err := both.GetEndpoint(testCtx(t), tn.ID, ep.ID); err != nil || got.Secret != secretA {
		t.Fatalf("GetEndpoint with the old key in the old keys: %q, %v", got.Secret, err)
	}
	if _, err := both.UpdateEndpoint(testCtx(t), tn.ID, ep.ID, func(*store.Endpoint) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := rotatedKey.GetEndpoint(testCtx(t), tn.ID, ep.ID); err != nil || got.Secret != secretA {
		t.Fatalf("after a write under the new key, the new key alone reads it: %q, %v", got.Secret, err)
	}

	// An endpoint that no key opens can still be deleted, as can its tenant.
	ep2 := mustEndpoint(t, st, tn.ID)
	if err := rotatedKey.DeleteEndpoint(testCtx(t), tn.ID, ep2.ID); err != nil {
		t.Fatalf("DeleteEndpoint of an unreadable endpoint: %v", err)
	}
	mustEndpoint(t, st, tn.ID)
	if err := rotatedKey.DeleteTenant(testCtx(t), tn.ID); err != nil {
		t.Fatalf("DeleteTenant with an unreadable endpoint: %v", err)
	}
}

func TestSealedSecretIsBoundToItsEndpoint(t *testing.T) {
	js := jsOnly(t)
	st := reopen(t, js, store.WithSealer(sealer(t, 1)))
	victim, _ := mustTenant(t, st, "victim")
	attacker, _ := mustTenant(t, st, "attacker")
	vep := mustEndpoint(t, st, victim.ID, func(e *store.Endpoint) { e.Secret = secretA })
	aep := mustEndpoint(t, st, attacker.ID)

	// Someone who can write the bucket copies the victim's record under
	// the attacker's endpoint: the secret must not open there.
	raw, _ := rawEndpoint(t, st, victim.ID, vep.ID)
	if _, err := st.KV().Put(testCtx(t), store.EndpointKey(attacker.ID, aep.ID), []byte(raw)); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetEndpoint(testCtx(t), attacker.ID, aep.ID)
	if !errors.Is(err, seal.ErrCorrupt) {
		t.Fatalf("moved record opened: %q, %v; want ErrCorrupt", got.Secret, err)
	}
}

func TestResealAndDeletePurgeOldRevisions(t *testing.T) {
	js := jsOnly(t)
	plain := reopen(t, js)
	tn, _ := mustTenant(t, plain, "acme")
	p := mustEndpoint(t, plain, tn.ID, func(e *store.Endpoint) { e.Secret = secretA })
	// Several revisions in clear.
	rotate(t, plain, tn.ID, p.ID, secretB)
	unsigned := mustEndpoint(t, plain, tn.ID, func(e *store.Endpoint) { e.Signature = sign.None })

	oldKey := reopen(t, js, store.WithSealer(sealer(t, 1)))
	o := mustEndpoint(t, oldKey, tn.ID)

	st := reopen(t, js, store.WithSealer(sealer(t, 2, 1)))
	n, err := st.Reseal(testCtx(t))
	if err != nil || n != 2 {
		t.Fatalf("Reseal = %d, %v; want 2 (the plaintext one and the one under the old key)", n, err)
	}
	raw, revs := rawEndpoint(t, st, tn.ID, p.ID)
	if len(revs) != 1 || strings.Contains(raw, "c2Vj") || !strings.Contains(raw, ":"+sealer(t, 2).KeyID()+":") {
		t.Fatalf("after Reseal: %d revisions, latest %s; want one, sealed under the current key", len(revs), raw)
	}
	if raw, _ := rawEndpoint(t, st, tn.ID, o.ID); !strings.Contains(raw, ":"+sealer(t, 2).KeyID()+":") {
		t.Fatalf("endpoint under the old key not resealed: %s", raw)
	}
	if _, revs := rawEndpoint(t, st, tn.ID, unsigned.ID); len(revs) != 1 {
		t.Fatalf("an unsigned endpoint was rewritten")
	}
	newOnly := reopen(t, js, store.WithSealer(sealer(t, 2)))
	if got, err := newOnly.GetEndpoint(testCtx(t), tn.ID, p.ID); err != nil || got.Secret != secretB || got.OldSecrets[0].Secret != secretA {
		t.Fatalf("after Reseal the current key alone reads: %+v, %v", got, err)
	}
	if n, err := st.Reseal(testCtx(t)); n != 0 || err != nil {
		t.Fatalf("second Reseal = %d, %v; want nothing to do", n, err)
	}

	// A deleted endpoint leaves no revision behind.
	if err := st.DeleteEndpoint(testCtx(t), tn.ID, p.ID); err != nil {
		t.Fatal(err)
	}
	hist, err := st.KV().History(testCtx(t), store.EndpointKey(tn.ID, p.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if len(h.Value()) > 0 {
			t.Fatalf("deleted endpoint keeps revision %d: %s", h.Revision(), h.Value())
		}
	}
	if _, err := st.GetEndpoint(testCtx(t), tn.ID, p.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetEndpoint after delete: %v", err)
	}
	if err := st.DeleteEndpoint(testCtx(t), tn.ID, p.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteEndpoint: %v, want ErrNotFound", err)
	}
}

func TestValidateRefusesSealedLookingSecret(t *testing.T) {
	e := store.Endpoint{Name: "n", URL: "https://example.com", Events: []string{"*"}, Signature: sign.GitHub, Secret: "enc:v1:00000000:AAAA"}
	e.ApplyDefaults()
	if fields := errFields(e.Validate()); len(fields) != 1 || fields[0] != "secret" {
		t.Fatalf("Validate fields %v, want [secret]", fields)
	}
}

// Custom header values often carry the receiver's credentials: they are
// sealed at rest like secrets, read back in clear, bound to their header,
// and a plaintext record from before is sealed by Reseal.
func TestHeaderValuesSealedAtRest(t *testing.T) {
	js := jsOnly(t)
	const token = "Bearer receiver-api-token-123"
	plain := reopen(t, js)
	tn, _ := mustTenant(t, plain, "acme")
	old := mustEndpoint(t, plain, tn.ID, func(e *store.Endpoint) { e.Headers = map[string]string{"Authorization": token} })
	if raw, _ := rawEndpoint(t, plain, tn.ID, old.ID); !strings.Contains(raw, token) {
		t.Fatalf("without a key the header should be stored as is: %s", raw)
	}

	sl := sealer(t, 1)
	st := reopen(t, js, store.WithSealer(sl))
	ep := mustEndpoint(t, st, tn.ID, func(e *store.Endpoint) {
		e.Headers = map[string]string{"Authorization": token, "X-Api-Key": "k-456"}
	})
	raw, revs := rawEndpoint(t, st, tn.ID, ep.ID)
	for _, r := range append(revs, raw) {
		if strings.Contains(r, "receiver-api-token") || strings.Contains(r, "k-456") {
			t.Fatalf("a header value is stored in clear: %s", r)
		}
	}
	got, err := st.GetEndpoint(testCtx(t), tn.ID, ep.ID)
	if err != nil || got.Headers["Authorization"] != token || got.Headers["X-Api-Key"] != "k-456" {
		t.Fatalf("GetEndpoint headers = %v, %v", got.Headers, err)
	}

	// A sealed value moved to another header does not open.
	swapped, err := store.SealEndpoint(sl, store.Endpoint{ID: "x", Headers: map[string]string{"A": "one"}}, "ctx")
	if err != nil {
		t.Fatal(err)
	}
	swapped.Headers = map[string]string{"B": swapped.Headers["A"]}
	if err := store.OpenEndpoint(sl, &swapped, "ctx"); !errors.Is(err, store.ErrSealed) {
		t.Fatalf("a value sealed for header A opened as header B: %v", err)
	}

	// The endpoint written before the key existed is sealed by Reseal.
	if _, err := st.Reseal(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if raw, _ := rawEndpoint(t, st, tn.ID, old.ID); strings.Contains(raw, token) {
		t.Fatalf("Reseal left a header value in clear: %s", raw)
	}
	if got, err := st.GetEndpoint(testCtx(t), tn.ID, old.ID); err != nil || got.Headers["Authorization"] != token {
		t.Fatalf("resealed endpoint headers = %v, %v", got.Headers, err)
	}
}

func TestValidateRefusesSealedLookingHeaderValue(t *testing.T) {
	e := store.Endpoint{Name: "n", URL: "https://example.com", Events: []string{"*"}, Signature: sign.GitHub, Secret: "s",
		Headers: map[string]string{"X-Token": "enc:v1:00000000:AAAA"}}
	e.ApplyDefaults()
	if fields := errFields(e.Validate()); len(fields) != 1 || fields[0] != "headers.X-Token" {
		t.Fatalf("Validate fields %v, want [headers.X-Token]", fields)
	}
}
