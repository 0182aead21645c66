// Package natsauth lets producers publish straight to NATS with one of their
// tenant's API keys as the NATS token, so one credential serves HTTP and
// NATS, and nothing else of the server is theirs.
//
// It is an auth callout service (nats-server 2.10 and later): the server
// sends every client that is not one of Herald's own users (the callout's
// auth_users) to $SYS.REQ.USER.AUTH, the Callout checks the token against
// the store as the HTTP API does (store.LookupAPIKey) and answers a user JWT
// with the tenant's permissions (Permissions). The same code serves the
// all-in-one's embedded server, configured in code (natsembed.Config), and an
// operator's nats-server, configured with an authorization.auth_callout
// block: the callout, unlike the embedded server's CustomClientAuthentication
// hook, works for both, so there is one path to test and to trust.
//
// A callout authorizes connections as they open; a revoked key must also
// lose the connections it opened. Each authorized connection is named after
// its key (UserName), and the Sweeper lists the connections every few
// seconds (in the embedded server directly, on an external one through the
// system account) and kicks those whose key is gone.
package natsauth

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/jwt/v2"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/store"
)

// Keys looks API keys up in the store of record (*store.Store).
type Keys interface {
	// LookupAPIKey is the HTTP API's key check, returning the key's record.
	LookupAPIKey(ctx context.Context, key string) (store.APIKey, error)
	// APIKeyByHash returns the live key of that hash, store.ErrNotFound
	// once it is revoked.
	APIKeyByHash(ctx context.Context, hash string) (store.APIKey, error)
}

// userPrefix starts the name of every connection the callout authorized:
// "herald-key/<tenant>/<key id>/<key hash>". The hash finds the key again in
// one read (the store keeps only hashes: it is no credential); the id is
// what operators see in the API's key list.
const userPrefix = "herald-key/"

// UserName is the name a producer's connection gets for key k; it shows in
// the server's connection list (connz, auth=true).
func UserName(k store.APIKey) string {
	return userPrefix + k.TenantID + "/" + k.ID + "/" + k.Hash
}

// parseUserName inverts UserName; ok is false for any other name (Herald's
// own users, an operator's).
func parseUserName(name string) (tenant, id, hash string, ok bool) {
	rest, ok := strings.CutPrefix(name, userPrefix)
	if !ok {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// InboxPrefix is the inbox prefix a producer of tenant must use
// (nats.CustomInboxPrefix): its connection may subscribe only under it, so
// that it receives its own PubAcks and nothing of other tenants' replies.
// Plain "_INBOX.>" would let every producer read every other producer's
// replies, object store replies included.
func InboxPrefix(tenant string) string { return "_INBOX_" + tenant }

// Permissions are what a producer of tenant may do, and nothing more:
//
//   - publish events: herald.events.<tenant>.>;
//   - store a large body in the payload object store (bus.PayloadBucket) as
//     nats.go's ObjectStore Put does: open the bucket
//     ($JS.API.STREAM.INFO.OBJ_herald-payloads), look for an object of the
//     same name ($JS.API.DIRECT.GET.OBJ_herald-payloads.$O.herald-payloads.M.*),
//     publish chunks ($O.herald-payloads.C.<nuid>) and the meta message
//     ($O.herald-payloads.M.<base64 name>). Put's purge of the chunks of an
//     object it replaces ($JS.API.STREAM.PURGE) is refused: it would let a
//     producer purge the whole bucket; Put ignores the refusal and the old
//     chunks expire with the bucket's TTL;
//   - receive replies under InboxPrefix(tenant).
//
// The object store part cannot be narrowed per tenant: chunk subjects are
// random NUIDs, and the meta subject is the base64 of the whole object name,
// a single subject token, while NATS permissions match whole tokens only
// (no prefixes). So a producer may write chunks and meta messages, and read
// the meta (name, size, digest) of an object whose name it knows, whatever
// the tenant prefix of the name. The router only accepts a body under the
// event's own tenant ("<tenant>/"), but a producer that knows another
// tenant's object name could replace that object's meta. Operators who do
// not trust producers with that leave large bodies to the HTTP API (see
// docs/operations.md).
func Permissions(tenant string) jwt.Permissions {
	obj := "$O." + bus.PayloadBucket
	stream := "OBJ_" + bus.PayloadBucket
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{
			bus.EventsPrefix + tenant + ".>",
			"$JS.API.STREAM.INFO." + stream,
			"$JS.API.DIRECT.GET." + stream + "." + obj + ".M.*",
			obj + ".C.*",
			obj + ".M.*",
		}},
		Sub: jwt.Permission{Allow: jwt.StringList{InboxPrefix(tenant) + ".>"}},
	}
}

// errDenied is the one answer a refused client gets: it tells nothing of
// why (no such key, revoked, not a key at all).
var errDenied = errors.New("not authorized")

// authorize checks token and returns the key it is.
func authorize(ctx context.Context, keys Keys, token string) (store.APIKey, error) {
	if token == "" {
		return store.APIKey{}, errDenied
	}
	k, err := keys.LookupAPIKey(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return store.APIKey{}, errDenied
	}
	if err != nil {
		return store.APIKey{}, err
	}
	if !event.IsToken(k.TenantID) {
		// A tenant id is a subject token; anything else would widen the
		// permissions built from it.
		return store.APIKey{}, errDenied
	}
	return k, nil
}
