package service

import (
	"fmt"
	"io"
)

// PrintWelcome tells a newcomer at a terminal what runs where and the next
// three commands to try. It goes to stderr as plain text, not to the log:
// it carries the admin token, which logs never do.
func PrintWelcome(w io.Writer, i Info) {
	base := "http://" + i.HTTPAddr
	tokenNote := "(from HERALD_ADMIN_TOKEN)"
	if i.AdminTokenGenerated {
		tokenNote = "(generated once, kept in the data dir)"
	}
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
  NATS         %s   (producers may publish to herald.events.<tenant>.<type>)
  cache        %s
  admin token  %s %s

Try it:
  # 1. create a tenant; note its api_key
  curl -s -X POST %s/v1/tenants -H 'Authorization: Bearer %s' -d '{"name":"my blog"}'
  # 2. register an endpoint (a receiver of yours) for post.* events
  curl -s -X POST %s/v1/endpoints -H 'Authorization: Bearer <api_key>' -d '{"name":"my receiver","url":"http://127.0.0.1:9000/hook","events":["post.*"]}'
  # 3. send an event; it arrives signed at your receiver
  curl -s -X POST %s/v1/events -H 'Authorization: Bearer <api_key>' -d '{"type":"post.published","data":{"id":"42","title":"Hello"}}'

`, status, base, i.NATSURL, cache, i.AdminToken, tokenNote, base, i.AdminToken, base, base)
}
