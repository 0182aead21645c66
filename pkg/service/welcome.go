package service

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"time"

	"github.com/heraldhq/herald/pkg/session"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// WalkthroughTenant is the name the README's walk-through gives its
// tenant: the all-in-one prints a portal link for it at start.
const WalkthroughTenant = "my blog"

// welcomePortalTTL is how long the welcome text's portal link works: a
// working day of development.
const welcomePortalTTL = 12 * time.Hour

// PortalLink is a portal session of a tenant, for the welcome text.
type PortalLink struct {
	TenantID, TenantName, Token string
	ExpiresAt                   time.Time
}

// walkthroughPortal signs a portal session for the newest tenant named
// WalkthroughTenant, if there is one, so that `make run` links to the
// portal of the tenant the walk-through created.
func walkthroughPortal(ctx context.Context, st *store.Store, signer *session.Signer, log zerolog.Logger) []PortalLink {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ts, err := st.ListTenants(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("tenants not read: no portal link in the welcome text")
		return nil
	}
	ts = slices.DeleteFunc(ts, func(t store.Tenant) bool { return t.Name != WalkthroughTenant })
	if len(ts) == 0 {
		return nil
	}
	t := slices.MaxFunc(ts, func(a, b store.Tenant) int { return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID)) })
	tok, c, err := signer.Sign(session.Claims{Tenant: t.ID, Theme: session.Theme{Name: t.Name}}, time.Now(), welcomePortalTTL)
	if err != nil {
		log.Warn().Err(err).Msg("portal session not signed: no portal link in the welcome text")
		return nil
	}
	return []PortalLink{{TenantID: t.ID, TenantName: t.Name, Token: tok, ExpiresAt: c.Expires()}}
}

// welcomePortal is the welcome text's portal line: a link to the
// walk-through tenant's portal at a terminal (it is a credential, like the
// admin token), else how to get one.
func welcomePortal(w io.Writer, base string, i Info) string {
	if len(i.PortalLinks) == 0 {
		return "POST /v1/portal/sessions with a tenant's API key answers a link (step 4)"
	}
	l := i.PortalLinks[0]
	if !isTerminal(w) {
		return fmt.Sprintf("for tenant %q: POST /v1/portal/sessions with its API key (a link is shown at a terminal)", l.TenantName)
	}
	return fmt.Sprintf("%s/portal?session=%s\n               (tenant %q, %s; valid until %s)", base, url.QueryEscape(l.Token), l.TenantName, l.TenantID,
		l.ExpiresAt.Local().Format("15:04"))
}

// PrintWelcome tells a newcomer at a terminal what runs where and the next
// three commands to try. It goes to stderr as plain text, not to the log.
//
// The admin token itself is shown only when Herald generated it and w is a
// terminal: a token from HERALD_ADMIN_TOKEN is known to whoever set it, and
// a stderr redirected to a file or a log collector would keep the token
// there, at every start. Otherwise the text says where the token is, and
// the commands read it from there.
func PrintWelcome(w io.Writer, i Info) {
	base := "http://" + i.HTTPAddr
	token, auth := welcomeToken(w, i)
	cache := "Redis"
	if !i.Redis {
		cache = "in-process (no Redis answered)"
	}
	status := "Herald is running (development mode: it may deliver to loopback and private addresses)."
	if !i.EgressAllowPrivate {
		status = "Herald is running. It refuses to deliver to loopback and private addresses: set\n" +
			"HERALD_EGRESS_ALLOW_PRIVATE=true (development) or HERALD_EGRESS_ALLOW_CIDRS=127.0.0.0/8 to allow them."
	}
	fmt.Fprintf(w, `
%s
  API          %s
  NATS         %s   (producers: token = a tenant's API key; publish to herald.events.<tenant>.<type>)%s
  cache        %s
  admin token  %s
  portal       %s

Try it:
  # 1. create a tenant; note its api_key
  curl -s -X POST %s/v1/tenants -H "Authorization: Bearer %s" --json '{"name":"my blog"}'
  # 2. register an endpoint (a receiver of yours) for post.* events
  curl -s -X POST %s/v1/endpoints -H 'Authorization: Bearer <api_key>' --json '{"name":"my receiver","url":"http://127.0.0.1:9000/hook","events":["post.*"]}'
  # 3. send an event; it arrives signed at your receiver
  curl -s -X POST %s/v1/events -H 'Authorization: Bearer <api_key>' --json '{"type":"post.published","data":{"id":"42","title":"Hello"}}'
  # 3b. or publish it on NATS (Go), the API key as the token:
  #   nc, _ := nats.Connect("%s", nats.Token("<api_key>"), nats.CustomInboxPrefix("_INBOX_<tenant id>"))
  #   js, _ := jetstream.New(nc)
  #   js.Publish(ctx, "herald.events.<tenant id>.post.published", []byte(`+"`"+`{"id":"43","data":{"id":"43"}}`+"`"+`))
  # 4. open the webhooks portal your customers would see (the answer's url, in a browser)
  curl -s -X POST %s/v1/portal/sessions -H 'Authorization: Bearer <api_key>' --json '{}'

`, status, base, i.NATSURL, natsOwn(i), cache, token, welcomePortal(w, base, i), base, auth, base, base, i.NATSURL, base)
}

// natsOwn says where Herald's own NATS credentials are, for tools that need
// more than a producer may do (they are Herald's: never a producer's).
func natsOwn(i Info) string {
	if i.NATSAuthFile == "" {
		return ""
	}
	return "\n               Herald's own NATS user: " + i.NATSAuthFile
}

// welcomeToken returns the welcome text's admin token line and what the
// first command puts after "Bearer ": the token only when it may be shown.
func welcomeToken(w io.Writer, i Info) (line, auth string) {
	switch {
	case i.AdminToken == "":
		return "none set: tenant management answers 401 (set HERALD_ADMIN_TOKEN)", "<admin token>"
	case !i.AdminTokenGenerated:
		return "from HERALD_ADMIN_TOKEN (not shown)", "$HERALD_ADMIN_TOKEN"
	case isTerminal(w):
		return i.AdminToken + "   (generated once, kept in " + i.AdminTokenFile + ")", i.AdminToken
	default:
		return "generated once, kept in " + i.AdminTokenFile + " (not shown: stderr is not a terminal)",
			"$(cat " + i.AdminTokenFile + ")"
	}
}

// isTerminal reports whether w is a terminal, as os.Stderr is when a person
// runs Herald in a shell without redirecting it.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
