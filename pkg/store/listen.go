package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
)

// ListenScheme is the URL scheme of the temporary endpoints `herald listen`
// opens: listen://<endpoint id>. Deliveries to them travel over NATS to
// the developer's CLI (package listen) rather than over the network. An
// endpoint's listen URL always names the endpoint itself, so no endpoint
// can be pointed at another's listener.
const ListenScheme = "listen"

// listenPrefix keys the index of listen endpoints ("listen.<tenant>.<id>"),
// so that a sweeper finds them without reading every endpoint.
const listenPrefix = "listen."

// ListenURL is the URL of the listen endpoint id.
func ListenURL(id string) string { return ListenScheme + "://" + id }

// IsListen reports whether e is a `herald listen` endpoint.
func (e *Endpoint) IsListen() bool { return strings.HasPrefix(e.URL, ListenScheme+":") }

// EndpointRef names one endpoint.
type EndpointRef struct {
	TenantID string
	ID       string
}

// CreateListenEndpoint stores a new endpoint whose deliveries go to a
// `herald listen` CLI (URL ListenURL of its own id), and indexes it so
// that ListenEndpoints finds it. The index is written first: an endpoint
// is never left unindexed, and an index entry without an endpoint is
// dropped by the sweeper that finds it.
func (s *Store) CreateListenEndpoint(ctx context.Context, tenant string, e Endpoint) (Endpoint, error) {
	return s.createEndpoint(ctx, tenant, e, true)
}

func (s *Store) indexListen(ctx context.Context, tenant, id string) error {
	if _, err := s.kv.Put(ctx, listenKey(tenant, id), nil); err != nil {
		return fmt.Errorf("index listen endpoint: %w", err)
	}
	return nil
}

// ListenEndpoints lists every tenant's listen endpoints (and index entries
// whose endpoint is gone).
func (s *Store) ListenEndpoints(ctx context.Context) ([]EndpointRef, error) {
	keys, err := s.keys(ctx, listenPrefix+">")
	if err != nil {
		return nil, err
	}
	out := make([]EndpointRef, 0, len(keys))
	for _, k := range keys {
		tenant, id, ok := strings.Cut(strings.TrimPrefix(k, listenPrefix), ".")
		if ok && event.IsToken(tenant) && event.IsToken(id) {
			out = append(out, EndpointRef{TenantID: tenant, ID: id})
		}
	}
	return out, nil
}

func listenKey(tenant, id string) string { return listenPrefix + tenant + "." + id }

// unindexListen removes the listen index entries of keys (endpoint keys),
// if they have any.
func (s *Store) unindexListen(ctx context.Context, tenant string, ids ...string) error {
	for _, id := range ids {
		err := s.kv.Purge(ctx, listenKey(tenant, id))
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("unindex listen endpoint: %w", err)
		}
	}
	return nil
}

// DeleteListenEndpoint deletes a listen endpoint and its index entry,
// including an entry whose endpoint is already gone.
func (s *Store) DeleteListenEndpoint(ctx context.Context, tenant, id string) error {
	if err := s.DeleteEndpoint(ctx, tenant, id); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return s.unindexListen(ctx, tenant, id)
}
