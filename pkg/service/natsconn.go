package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/natsauth"
	"github.com/heraldhq/herald/pkg/natsembed"
	"github.com/heraldhq/herald/pkg/store"
)

// Every NATS connection of a Herald process is built here: to the embedded
// server with the credentials generated in the data dir, or to NATS_URL with
// the credentials and TLS of NATSClient. The auth callout that lets producers
// in with their tenant's API key (package natsauth) is started here too.

// NATSClient is how the separate services authenticate to the NATS server at
// NATS_URL, besides credentials in the URL itself (nats://user:pass@host,
// nats://token@host). At most one of Creds, NKeyFile, User and Token.
type NATSClient struct {
	// Creds is a .creds file (user JWT and seed): HERALD_NATS_CREDS.
	Creds string
	// NKeyFile is a file holding a user nkey seed: HERALD_NATS_NKEY.
	NKeyFile string
	// User and Password: HERALD_NATS_USER, HERALD_NATS_PASSWORD.
	User, Password string
	// Token: HERALD_NATS_TOKEN.
	Token string
	// TLSCA is the CA file that verifies the server (HERALD_NATS_TLS_CA);
	// TLSCert and TLSKey are the client certificate and key, for servers
	// that verify clients (HERALD_NATS_TLS_CERT, HERALD_NATS_TLS_KEY). Any
	// of them turns TLS on.
	TLSCA, TLSCert, TLSKey string
	// CalloutSeed is the account seed (SA...) the auth callout signs with
	// (HERALD_NATS_CALLOUT_SEED); its public key is the issuer in the
	// server's auth_callout block. Set on the API role, it lets producers
	// connect with an API key as their token.
	CalloutSeed string
	// SystemUser and SystemPassword are a user of the server's system
	// account (HERALD_NATS_SYSTEM_USER, HERALD_NATS_SYSTEM_PASSWORD): with
	// them the callout also closes the live connections of revoked keys.
	SystemUser, SystemPassword string
}

// check reports a configuration that cannot work, naming the variables.
func (c NATSClient) check() []string {
	var errs []string
	n := 0
	for _, set := range []bool{c.Creds != "", c.NKeyFile != "", c.User != "", c.Token != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, "set at most one of HERALD_NATS_CREDS, HERALD_NATS_NKEY, HERALD_NATS_USER and HERALD_NATS_TOKEN")
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, "HERALD_NATS_PASSWORD is set without HERALD_NATS_USER")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, "HERALD_NATS_TLS_CERT and HERALD_NATS_TLS_KEY go together")
	}
	if c.CalloutSeed != "" {
		if _, err := natsauth.ParseIssuer(c.CalloutSeed); err != nil {
			errs = append(errs, "HERALD_NATS_CALLOUT_SEED: "+err.Error())
		}
	}
	if (c.SystemUser == "") != (c.SystemPassword == "") {
		errs = append(errs, "HERALD_NATS_SYSTEM_USER and HERALD_NATS_SYSTEM_PASSWORD go together")
	}
	return errs
}

// options are the nats.go options of c's credentials and TLS.
func (c NATSClient) options() ([]nats.Option, error) {
	opts := c.tlsOptions()
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("HERALD_NATS_NKEY: %w", err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	}
	return opts, nil
}

func (c NATSClient) tlsOptions() []nats.Option {
	var opts []nats.Option
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts
}

// EmbeddedNATSAuth is what the all-in-one generates at its first start and
// keeps in the data dir (NATSAuthFile, mode 0600): the password of Herald's
// own user of the embedded server, and the seed the auth callout signs
// with. Tools that need Herald's view of the server (tests, benchmarks)
// read it with ReadEmbeddedNATSAuth; producers use an API key instead.
type EmbeddedNATSAuth struct {
	User        string `json:"user"`
	Password    string `json:"password"`
	CalloutSeed string `json:"callout_seed"`
}

// Options are the nats.go options of Herald's own user.
func (a EmbeddedNATSAuth) Options() []nats.Option {
	return []nats.Option{nats.UserInfo(a.User, a.Password)}
}

// natsAuthFileName is the file, next to admin-token, of EmbeddedNATSAuth.
const natsAuthFileName = "nats-auth.json"

// NATSAuthFile is where the all-in-one keeps EmbeddedNATSAuth: an absolute
// path, as adminTokenFile.
func NATSAuthFile(dataDir string) string {
	p := filepath.Join(dataDir, natsAuthFileName)
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// ReadEmbeddedNATSAuth reads what an all-in-one with data dir dataDir
// generated.
func ReadEmbeddedNATSAuth(dataDir string) (EmbeddedNATSAuth, error) {
	var a EmbeddedNATSAuth
	b, err := os.ReadFile(filepath.Join(dataDir, natsAuthFileName))
	if err != nil {
		return a, fmt.Errorf("embedded NATS credentials: %w", err)
	}
	if err := json.Unmarshal(b, &a); err != nil || a.User == "" || a.Password == "" {
		return a, fmt.Errorf("embedded NATS credentials in %s: not what Herald writes", filepath.Join(dataDir, natsAuthFileName))
	}
	if _, err := natsauth.ParseIssuer(a.CalloutSeed); err != nil {
		return a, fmt.Errorf("embedded NATS credentials in %s: callout_seed: %w", filepath.Join(dataDir, natsAuthFileName), err)
	}
	return a, nil
}

// embeddedNATSAuth reads the data dir's credentials, generating them on the
// first start. An existing file is never replaced, so tools configured with
// it keep working across restarts.
func embeddedNATSAuth(dataDir string) (EmbeddedNATSAuth, error) {
	path := filepath.Join(dataDir, natsAuthFileName)
	if _, err := os.Stat(path); err == nil {
		return ReadEmbeddedNATSAuth(dataDir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return EmbeddedNATSAuth{}, fmt.Errorf("embedded NATS credentials: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return EmbeddedNATSAuth{}, err
	}
	seed, err := natsauth.NewIssuer()
	if err != nil {
		return EmbeddedNATSAuth{}, err
	}
	a := EmbeddedNATSAuth{User: "herald", Password: base64.RawURLEncoding.EncodeToString(raw), CalloutSeed: seed}
	b, _ := json.MarshalIndent(a, "", "  ")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return EmbeddedNATSAuth{}, fmt.Errorf("data dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process was first
		return ReadEmbeddedNATSAuth(dataDir)
	}
	if err != nil {
		return EmbeddedNATSAuth{}, fmt.Errorf("store embedded NATS credentials: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return EmbeddedNATSAuth{}, fmt.Errorf("store embedded NATS credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return EmbeddedNATSAuth{}, fmt.Errorf("store embedded NATS credentials: %w", err)
	}
	return a, nil
}

// natsLink is a process's way to its NATS server: the embedded one it
// started, or NATS_URL.
type natsLink struct {
	cfg      Config
	log      zerolog.Logger
	embedded *natsembed.Server
	auth     EmbeddedNATSAuth // embedded only
	extra    []nats.Option    // NATS_URL only: cfg.NATSClient's options
}

// openNATS starts the embedded server (cfg.Embedded), which then requires
// credentials: Herald's user, or an API key checked by the auth callout.
func openNATS(cfg Config, log zerolog.Logger) (*natsLink, error) {
	l := &natsLink{cfg: cfg, log: log}
	if !cfg.Embedded {
		opts, err := cfg.NATSClient.options()
		if err != nil {
			return nil, err
		}
		l.extra = opts
		return l, nil
	}
	host, port, err := splitHostPort(cfg.NATSListen)
	if err != nil {
		return nil, fmt.Errorf("HERALD_NATS_LISTEN: %w", err)
	}
	if l.auth, err = embeddedNATSAuth(cfg.DataDir); err != nil {
		return nil, err
	}
	issuer, err := natsauth.ParseIssuer(l.auth.CalloutSeed)
	if err != nil {
		return nil, fmt.Errorf("%s: callout_seed: %w", NATSAuthFile(cfg.DataDir), err)
	}
	pub, _ := issuer.PublicKey()
	ecfg := natsembed.Config{
		StoreDir: filepath.Join(cfg.DataDir, "nats"), Host: host, Port: port,
		ServerName: "herald", Logger: log.With().Str("component", "nats").Logger(),
		Users: map[string]string{l.auth.User: l.auth.Password}, CalloutIssuer: pub,
	}
	switch {
	case cfg.NATSSync == "always":
		ecfg.SyncAlways = true
	case cfg.NATSSync != "":
		ecfg.SyncInterval, _ = time.ParseDuration(cfg.NATSSync)
	}
	if l.embedded, err = natsembed.Start(ecfg); err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	return l, nil
}

// clientURL is where producers connect: the embedded server's listener, or
// NATS_URL.
func (l *natsLink) clientURL() string {
	if l.embedded != nil {
		return l.embedded.ClientURL()
	}
	return l.cfg.NATSURL
}

// connect opens a connection named name with Herald's credentials,
// reconnecting for ever (natsOptions).
func (l *natsLink) connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append(append(natsOptions(l.log), nats.Name(name)), opts...)
	if l.embedded != nil {
		nc, err := l.embedded.Connect(append(all, l.auth.Options()...)...)
		if err != nil {
			return nil, fmt.Errorf("connect embedded nats: %w", err)
		}
		return nc, nil
	}
	nc, err := nats.Connect(l.cfg.NATSURL, append(all, l.extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", maskCredentials(l.cfg.NATSURL), err)
	}
	return nc, nil
}

// close stops the embedded server, if any, after the connections closed.
func (l *natsLink) close() {
	if l.embedded != nil {
		l.embedded.Shutdown()
	}
}

// serveProducerAuth runs, until ctx ends, the auth callout that lets
// producers in with an API key (on the embedded server always; on NATS_URL
// when HERALD_NATS_CALLOUT_SEED is set, in the API role) and the sweeper
// that closes the connections of revoked keys.
func (l *natsLink) serveProducerAuth(ctx context.Context, wg *sync.WaitGroup, st *store.Store) error {
	seed := l.cfg.NATSClient.CalloutSeed
	if l.embedded != nil {
		seed = l.auth.CalloutSeed
	} else if seed == "" || !l.cfg.Roles.API {
		return nil
	}
	issuer, err := natsauth.ParseIssuer(seed)
	if err != nil {
		return fmt.Errorf("auth callout: %w", err)
	}
	log := l.log.With().Str("component", "natsauth").Logger()
	co, err := natsauth.NewCallout(issuer, st, natsauth.WithLogger(log))
	if err != nil {
		return err
	}
	// Its own connection: authorization answers must not queue behind
	// event traffic, the server waits for them 2 s at most.
	anc, err := l.connect("herald-auth")
	if err != nil {
		return err
	}
	if _, err := co.Serve(anc); err != nil {
		anc.Close()
		return err
	}
	var conns natsauth.Conns
	var snc *nats.Conn
	switch {
	case l.embedded != nil:
		conns = natsauth.ServerConns(l.embedded.NATS())
	case l.cfg.NATSClient.SystemUser != "":
		snc, err = nats.Connect(l.cfg.NATSURL, append(append(natsOptions(l.log), nats.Name("herald-auth-system")),
			append(l.cfg.NATSClient.tlsOptions(), nats.UserInfo(l.cfg.NATSClient.SystemUser, l.cfg.NATSClient.SystemPassword))...)...)
		if err != nil {
			anc.Close()
			return fmt.Errorf("connect %s as the system user: %w", maskCredentials(l.cfg.NATSURL), err)
		}
		conns = natsauth.SystemConns(snc)
	default:
		log.Warn().Msg("HERALD_NATS_SYSTEM_USER is not set: a revoked API key is refused at its next NATS connect, but its open connections stay until they reconnect")
	}
	log.Info().Str("issuer", co.Issuer()).Bool("closes_revoked", conns != nil).Msg("producers may connect to NATS with an API key as their token")
	wg.Add(1)
	go func() {
		defer wg.Done()
		if conns != nil {
			natsauth.NewSweeper(conns, st, log).Run(ctx)
		} else {
			<-ctx.Done()
		}
		anc.Close()
		if snc != nil {
			snc.Close()
		}
	}()
	return nil
}
