// Package portal serves the webhooks portal: the page a platform embeds
// (or links to) so that its customers manage their own endpoints, see
// their deliveries and replay what failed, without the platform building
// that page.
//
// The portal is a plain page and a small script, embedded in the binary
// (no build step, no CDN). The script calls the same public /v1 API as
// everyone else, with the session token as its Bearer credential, so the
// portal can do nothing the API would refuse that session: the session's
// scope is enforced by the API (pkg/api), not here. What this package
// decides is who may show the page: a valid session, framed only by the
// origins the session lists (CSP frame-ancestors).
package portal

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/session"
	"github.com/rs/zerolog"
)

//go:embed assets
var assets embed.FS

var page = template.Must(template.ParseFS(assets, "assets/index.html"))

// Verifier checks session tokens (session.Signer).
type Verifier interface {
	Verify(token string, now time.Time) (session.Claims, error)
}

// Handler serves the portal under Path.
type Handler struct {
	sessions Verifier
	log      zerolog.Logger
	static   http.Handler
	now      func() time.Time
}

// Path is where the portal is served: the page at Path, its files under
// Path + "/assets/".
const Path = "/portal"

// Option configures a Handler.
type Option func(*Handler)

// WithLogger sets the logger of refused pages.
func WithLogger(l zerolog.Logger) Option { return func(h *Handler) { h.log = l } }

// New returns the portal's handler. With a nil Verifier (no portal signing
// key) every page answers 503.
func New(v Verifier, opts ...Option) *Handler {
	sub, _ := fs.Sub(assets, "assets")
	h := &Handler{sessions: v, log: zerolog.Nop(), now: time.Now,
		static: http.StripPrefix(Path+"/assets/", http.FileServerFS(sub))}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Register serves the portal on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET "+Path, h)
	mux.Handle("GET "+Path+"/", h)
}

// ServeHTTP serves the page or one of its files.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if name, ok := strings.CutPrefix(r.URL.Path, Path+"/assets/"); ok && name != "" && name != "index.html" {
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		w.Header().Set("Cache-Control", "no-cache")
		h.static.ServeHTTP(w, r)
		return
	}
	if r.URL.Path != Path && r.URL.Path != Path+"/" {
		http.NotFound(w, r)
		return
	}
	h.servePage(w, r)
}

// pageData is what the page template shows.
type pageData struct {
	Title        string
	LogoURL      string
	PrimaryColor string
	Message      string
}

func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if h.sessions == nil {
		h.refuse(w, r, http.StatusServiceUnavailable, "The webhooks portal is not enabled on this deployment.", "no portal key")
		return
	}
	c, err := h.sessions.Verify(r.URL.Query().Get("session"), h.now())
	if err != nil {
		h.refuse(w, r, http.StatusUnauthorized, "This link to the webhooks portal is not valid or has expired. Open the portal again from your account.", err.Error())
		return
	}
	if !framingAllowed(r, c.FrameAncestors) {
		h.refuse(w, r, http.StatusForbidden, "This page may not be shown inside this site.", "framed by an origin the session does not list")
		return
	}
	w.Header().Set("Content-Security-Policy", csp(c))
	if len(c.FrameAncestors) == 0 {
		w.Header().Set("X-Frame-Options", "DENY")
	}
	title := c.Theme.Name
	if title == "" {
		title = "Webhooks"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, pageData{Title: title, LogoURL: c.Theme.LogoURL, PrimaryColor: c.Theme.PrimaryColor})
}

// refuse answers a page that says why nothing is shown, framed by no one.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg, why string) {
	h.log.Info().Int("status", status).Str("reason", why).Str("client_addr", r.RemoteAddr).Msg("portal page refused")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = page.Execute(w, pageData{Title: "Webhooks", Message: msg})
}

// csp is the page's Content-Security-Policy: its own script, styles and
// API only, the theme's logo, and framing by the session's origins alone.
func csp(c session.Claims) string {
	img := "'self' data:"
	if u, err := url.Parse(c.Theme.LogoURL); err == nil && u.Host != "" {
		img += " " + u.Scheme + "://" + u.Host
	}
	ancestors := "'none'"
	if len(c.FrameAncestors) > 0 {
		ancestors = strings.Join(c.FrameAncestors, " ")
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src " + img +
		"; frame-ancestors " + ancestors + "; base-uri 'none'; form-action 'none'"
}

// framingAllowed is the server's own check of who frames the page, on top
// of the CSP the browser enforces: a page loaded into a frame
// (Sec-Fetch-Dest) is refused when the session lists no origin, and when
// the framing page's origin (Referer, which browsers send as the origin at
// least) is not one it lists.
func framingAllowed(r *http.Request, allowed []string) bool {
	switch r.Header.Get("Sec-Fetch-Dest") {
	case "iframe", "frame", "embed", "object", "fencedframe":
	default:
		return true
	}
	if len(allowed) == 0 {
		return false
	}
	ref, err := url.Parse(r.Header.Get("Referer"))
	if err != nil || ref.Host == "" {
		return true // no origin to check: the CSP decides
	}
	for _, a := range allowed {
		if originMatches(a, ref.Scheme, ref.Host) {
			return true
		}
	}
	return false
}

// originMatches reports whether scheme://host matches the CSP host source
// a (scheme://host[:port], host possibly starting with *.).
func originMatches(a, scheme, host string) bool {
	u, err := url.Parse(a)
	if err != nil || u.Scheme != scheme {
		return false
	}
	if wild, ok := strings.CutPrefix(u.Host, "*."); ok {
		return strings.HasSuffix(host, "."+wild)
	}
	return strings.EqualFold(u.Host, host)
}
