package portal_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/portal"
	"github.com/heraldhq/herald/pkg/session"
)

// TestPage: the page is shown for a valid session only, with a CSP that
// lets only the session's origins frame it; a page loaded into a frame by
// another origin is refused by the server too.
func TestPage(t *testing.T) {
	signer, err := session.New(bytes.Repeat([]byte{3}, session.KeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	portal.New(signer).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	sign := func(c session.Claims, at time.Time) string {
		c.Tenant = "tn_1"
		tok, _, err := signer.Sign(c, at, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	plain := sign(session.Claims{Theme: session.Theme{Name: "Blog <b>", PrimaryColor: "#123456", LogoURL: "https://cdn.example/logo.png"}}, time.Now())
	framed := sign(session.Claims{FrameAncestors: []string{"https://app.example", "https://*.example.org"}}, time.Now())
	expired := sign(session.Claims{}, time.Now().Add(-2*time.Hour))
	other, _ := session.New(bytes.Repeat([]byte{4}, session.KeyBytes))
	forged, _, _ := other.Sign(session.Claims{Tenant: "tn_1"}, time.Now(), time.Hour)

	get := func(tok string, header ...string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+portal.Path+"?session="+url.QueryEscape(tok), nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, tc := range []struct {
		name, token string
		header      []string
		status      int
		ancestors   string
	}{
		{"plain", plain, nil, 200, "frame-ancestors 'none'"},
		{"framed by nobody allowed", plain, []string{"Sec-Fetch-Dest", "iframe", "Referer", "https://evil.example/"}, 403, "frame-ancestors 'none'"},
		{"listed origins", framed, nil, 200, "frame-ancestors https://app.example https://*.example.org"},
		{"framed by a listed origin", framed, []string{"Sec-Fetch-Dest", "iframe", "Referer", "https://app.example/settings"}, 200, "frame-ancestors https://app.example"},
		{"framed by a listed wildcard", framed, []string{"Sec-Fetch-Dest", "iframe", "Referer", "https://a.example.org/"}, 200, "frame-ancestors https://app.example"},
		{"framed by another origin", framed, []string{"Sec-Fetch-Dest", "iframe", "Referer", "https://evil.example/"}, 403, "frame-ancestors 'none'"},
		{"expired", expired, nil, 401, "frame-ancestors 'none'"},
		{"forged", forged, nil, 401, "frame-ancestors 'none'"},
		{"none", "", nil, 401, "frame-ancestors 'none'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(tc.token, tc.header...)
			csp := resp.Header.Get("Content-Security-Policy")
			if resp.StatusCode != tc.status || !strings.Contains(csp, tc.ancestors) {
				t.Fatalf("status %d, CSP %q; want %d and %q", resp.StatusCode, csp, tc.status, tc.ancestors)
			}
			if script := strings.Contains(body, "portal.js"); script != (tc.status == 200) {
				t.Fatalf("script in the page: %v, status %d:\n%s", script, resp.StatusCode, body)
			}
			if strings.Contains(tc.ancestors, "'none'") != (resp.Header.Get("X-Frame-Options") == "DENY") {
				t.Fatalf("X-Frame-Options %q with CSP %q", resp.Header.Get("X-Frame-Options"), csp)
			}
			if resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("headers %v", resp.Header)
			}
		})
	}
	resp, body := get(plain)
	if !strings.Contains(body, "Blog &lt;b&gt;") || !strings.Contains(body, `data-primary-color="#123456"`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "img-src 'self' data: https://cdn.example;") {
		t.Fatalf("theme not applied (escaped):\n%s\nCSP %s", body, resp.Header.Get("Content-Security-Policy"))
	}
	js, err := http.Get(srv.URL + portal.Path + "/assets/portal.js")
	if err != nil {
		t.Fatal(err)
	}
	js.Body.Close()
	if js.StatusCode != 200 || !strings.HasPrefix(js.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("portal.js: %d %s", js.StatusCode, js.Header.Get("Content-Type"))
	}
}
