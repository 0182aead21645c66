package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/valid"
)

type tenantInput struct {
	Name string `json:"name"`
}

func (in tenantInput) validate() error {
	var errs valid.Errors
	if n := strings.TrimSpace(in.Name); n == "" {
		errs.Add("name", "is required")
	} else if len(n) > 200 {
		errs.Add("name", "must be at most 200 characters")
	} else if msg := valid.Text(n, false); msg != "" {
		errs.Add("name", "%s", msg)
	}
	return errs.Err()
}

type tenantView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	APIKey    string    `json:"api_key,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewTenant(t store.Tenant, key string) tenantView {
	return tenantView{ID: t.ID, Name: t.Name, APIKey: key, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) {
	var in tenantInput
	if !decode(w, r, &in) {
		return
	}
	if err := in.validate(); invalid(w, r, err) {
		return
	}
	t, key, err := s.store.CreateTenant(r.Context(), strings.TrimSpace(in.Name))
	if err != nil {
		s.storeError(w, r, err, "tenant")
		return
	}
	writeJSON(w, http.StatusCreated, viewTenant(t, key))
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request) {
	limit, after, ok := listQuery(w, r)
	if !ok {
		return
	}
	p, err := s.store.TenantsPage(r.Context(), after, limit)
	if err != nil {
		s.storeError(w, r, err, "tenants")
		return
	}
	out := make([]tenantView, len(p.Items))
	for i, t := range p.Items {
		out[i] = viewTenant(t, "")
	}
	var next string
	if p.More {
		next = idCursor(p.Items[len(p.Items)-1].ID)
	}
	writeJSON(w, http.StatusOK, newPage(out, next))
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request) {
	t, err := s.store.GetTenant(r.Context(), r.PathValue("tenant"))
	if err != nil {
		s.storeError(w, r, err, "tenant")
		return
	}
	writeJSON(w, http.StatusOK, viewTenant(t, ""))
}

func (s *Server) renameTenant(w http.ResponseWriter, r *http.Request) {
	var in tenantInput
	if !decode(w, r, &in) {
		return
	}
	if err := in.validate(); invalid(w, r, err) {
		return
	}
	t, err := s.store.RenameTenant(r.Context(), r.PathValue("tenant"), strings.TrimSpace(in.Name))
	if err != nil {
		s.storeError(w, r, err, "tenant")
		return
	}
	writeJSON(w, http.StatusOK, viewTenant(t, ""))
}

func (s *Server) deleteTenant(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("tenant")
	if err := s.store.DeleteTenant(r.Context(), id); err != nil {
		s.storeError(w, r, err, "tenant")
		return
	}
	s.forgetKeys()
	if s.invalidator != nil {
		s.invalidator.Invalidate(r.Context(), id)
	}
	w.WriteHeader(http.StatusNoContent)
}

type keyView struct {
	ID        string    `json:"id"`
	Prefix    string    `json:"prefix"`
	Key       string    `json:"key,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("tenant")
	if _, err := s.store.GetTenant(r.Context(), id); err != nil {
		s.storeError(w, r, err, "tenant")
		return
	}
	keys, err := s.store.APIKeys(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err, "keys")
		return
	}
	out := make([]keyView, len(keys))
	for i, k := range keys {
		out[i] = keyView{ID: k.ID, Prefix: k.Prefix, CreatedAt: k.CreatedAt}
	}
	writeJSON(w, http.StatusOK, newPage(out, ""))
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("tenant")
	if _, err := s.store.GetTenant(r.Context(), id); err != nil {
		s.storeError(w, r, err, "tenant")
		return
	}
	key, k, err := s.store.CreateAPIKey(r.Context(), id)
	if err != nil {
		s.storeError(w, r, err, "key")
		return
	}
	writeJSON(w, http.StatusCreated, keyView{ID: k.ID, Prefix: k.Prefix, Key: key, CreatedAt: k.CreatedAt})
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) {
	if err := s.store.RevokeAPIKey(r.Context(), r.PathValue("tenant"), r.PathValue("key")); err != nil {
		s.storeError(w, r, err, "key")
		return
	}
	s.forgetKeys()
	w.WriteHeader(http.StatusNoContent)
}
