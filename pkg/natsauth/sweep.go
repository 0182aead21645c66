package natsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/store"
)

// SweepEvery is how often the Sweeper looks for connections of revoked
// keys: a revoked key's connections close within about this long.
const SweepEvery = 2 * time.Second

// Conn is one client connection of a server.
type Conn struct {
	Server string // server id
	ID     uint64 // client id on that server
	User   string // the authorized user: UserName for producers
}

// Conns lists a deployment's client connections and closes one.
type Conns interface {
	List(ctx context.Context) ([]Conn, error)
	Kick(ctx context.Context, c Conn) error
}

// Sweeper closes the connections of keys that were revoked, and of deleted
// tenants, after they were authorized.
type Sweeper struct {
	conns Conns
	keys  Keys
	every time.Duration
	log   zerolog.Logger
}

// NewSweeper sweeps conns every SweepEvery, checking keys against keys.
func NewSweeper(conns Conns, keys Keys, log zerolog.Logger) *Sweeper {
	return &Sweeper{conns: conns, keys: keys, every: SweepEvery, log: log}
}

// Run sweeps until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, s.every*5)
		_, err := s.Sweep(sctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			s.log.Warn().Err(err).Msg("connections of revoked API keys not checked; retrying")
			failing = true
		case err == nil && failing:
			s.log.Info().Msg("connections of revoked API keys checked again")
			failing = false
		}
	}
}

// Sweep closes, once, the connections whose key is no longer live and
// returns how many it closed. A key that cannot be read is left alone: only
// a store that says "no such key" closes a connection.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	conns, err := s.conns.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("list connections: %w", err)
	}
	byHash := map[string][]Conn{}
	for _, c := range conns {
		if _, _, hash, ok := parseUserName(c.User); ok {
			byHash[hash] = append(byHash[hash], c)
		}
	}
	kicked := 0
	var errs []error
	for hash, cs := range byHash {
		tenant, id, _, _ := parseUserName(cs[0].User)
		k, err := s.keys.APIKeyByHash(ctx, hash)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			errs = append(errs, err)
			continue
		case k.TenantID == tenant && k.ID == id:
			continue
		}
		for _, c := range cs {
			if err := s.conns.Kick(ctx, c); err != nil {
				errs = append(errs, fmt.Errorf("close connection %d: %w", c.ID, err))
				continue
			}
			kicked++
		}
		s.log.Info().Str("tenant_id", tenant).Str("key_id", id).Int("connections", len(cs)).
			Msg("NATS connections of a revoked API key closed")
	}
	return kicked, errors.Join(errs...)
}

// ServerConns are the connections of a server running in this process (the
// all-in-one's embedded one).
func ServerConns(ns *server.Server) Conns { return serverConns{ns} }

type serverConns struct{ ns *server.Server }

func (s serverConns) List(context.Context) ([]Conn, error) {
	var out []Conn
	for offset := 0; ; {
		cz, err := s.ns.Connz(&server.ConnzOptions{Username: true, State: server.ConnOpen, Offset: offset, Limit: 1024})
		if err != nil {
			return nil, err
		}
		for _, ci := range cz.Conns {
			out = append(out, Conn{Server: cz.ID, ID: ci.Cid, User: ci.AuthorizedUser})
		}
		offset += len(cz.Conns)
		if len(cz.Conns) == 0 || offset >= cz.Total {
			return out, nil
		}
	}
}

func (s serverConns) Kick(_ context.Context, c Conn) error {
	if err := s.ns.DisconnectClientByID(c.ID); err != nil && !strings.Contains(err.Error(), "no such client") {
		return err
	}
	return nil
}

// SystemConns are the connections of every server of an external
// deployment, listed and closed through the system account: nc must be a
// user of the server's system account ($SYS.REQ.SERVER.PING.CONNZ and
// $SYS.REQ.SERVER.<id>.KICK).
func SystemConns(nc *nats.Conn) Conns { return systemConns{nc} }

type systemConns struct{ nc *nats.Conn }

// listLimit is the most connections one server reports per sweep.
const listLimit = 100_000

// quiet is how long List waits for one more server's answer after the last.
const quiet = 300 * time.Millisecond

type sysResponse struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
}

func (s systemConns) List(ctx context.Context) ([]Conn, error) {
	inbox := s.nc.NewInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := s.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(server.ConnzEventOptions{ConnzOptions: server.ConnzOptions{Username: true, State: server.ConnOpen, Limit: listLimit}})
	if err := s.nc.PublishRequest("$SYS.REQ.SERVER.PING.CONNZ", inbox, req); err != nil {
		return nil, err
	}
	var out []Conn
	answers := 0
	wait := time.NewTimer(2 * time.Second) // the first answer
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait.C:
			if answers == 0 {
				return nil, errors.New("no server answered $SYS.REQ.SERVER.PING.CONNZ: is Herald's system user in the system account?")
			}
			return out, nil
		case m := <-ch:
			var r sysResponse
			var cz server.Connz
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return nil, fmt.Errorf("connz answer: %w", err)
			}
			if r.Error != nil {
				return nil, fmt.Errorf("connz: %s", r.Error.Description)
			}
			if err := json.Unmarshal(r.Data, &cz); err != nil {
				return nil, fmt.Errorf("connz answer: %w", err)
			}
			for _, ci := range cz.Conns {
				out = append(out, Conn{Server: r.Server.ID, ID: ci.Cid, User: ci.AuthorizedUser})
			}
			answers++
			wait.Reset(quiet)
		}
	}
}

func (s systemConns) Kick(ctx context.Context, c Conn) error {
	body, _ := json.Marshal(server.KickClientReq{CID: c.ID})
	m, err := s.nc.RequestWithContext(ctx, "$SYS.REQ.SERVER."+c.Server+".KICK", body)
	if err != nil {
		return err
	}
	var r sysResponse
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("kick answer: %w", err)
	}
	if r.Error != nil && !strings.Contains(r.Error.Description, "no such client") {
		return errors.New(r.Error.Description)
	}
	return nil
}
