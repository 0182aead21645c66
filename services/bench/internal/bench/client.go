package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// API is a small client of Herald's management API, for setting up a load.
type API struct {
	Base  string // http://host:port
	Admin string // operator token
	HTTP  *http.Client
}

// TenantInfo is a created tenant.
type TenantInfo struct {
	ID     string `json:"id"`
	APIKey string `json:"api_key"`
}

// EndpointSpec is what the bench registers.
type EndpointSpec struct {
	Name        string   `json:"name"`
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	TimeoutMS   int      `json:"timeout_ms,omitempty"`
	MaxAttempts int      `json:"max_attempts,omitempty"`
}

// EndpointInfo is a created endpoint.
type EndpointInfo struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

func (a *API) call(ctx context.Context, method, path, token string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.Base, "/")+path, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		c := a.HTTP
		if c == nil {
			c = http.DefaultClient
		}
		resp, err := c.Do(req)
		if err != nil {
			last = err
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			switch {
			case resp.StatusCode < 300:
				return json.Unmarshal(body, out)
			case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusConflict:
				last = fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
			default:
				return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
	return last
}

// CreateTenant creates a tenant and returns its id and API key.
func (a *API) CreateTenant(ctx context.Context, name string) (TenantInfo, error) {
	var t TenantInfo
	err := a.call(ctx, http.MethodPost, "/v1/tenants", a.Admin, map[string]string{"name": name}, &t)
	return t, err
}

// CreateEndpoint registers an endpoint for the tenant with key apiKey and
// returns its id and the secret Herald generated.
func (a *API) CreateEndpoint(ctx context.Context, apiKey string, e EndpointSpec) (EndpointInfo, error) {
	var out EndpointInfo
	err := a.call(ctx, http.MethodPost, "/v1/endpoints", apiKey, e, &out)
	return out, err
}
