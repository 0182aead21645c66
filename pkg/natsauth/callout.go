package natsauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/store"
)

// Subject is where nats-server asks an auth callout service to authorize a
// client; QueueGroup spreads the questions over the API replicas.
const (
	Subject    = "$SYS.REQ.USER.AUTH"
	QueueGroup = "herald-auth"
)

// GlobalAccount is the account authorized producers are placed in: the one
// Herald's own users and streams live in on a server configured without
// accounts (the embedded server, and the nats-server configs in deploy/).
const GlobalAccount = "$G"

// maxInFlight bounds the authorization requests answered at once (each is
// one store read), so a reconnect storm of producers queues instead of
// spawning without bound.
const maxInFlight = 64

// Callout answers the server's authorization requests.
type Callout struct {
	issuer  nkeys.KeyPair
	pub     string
	keys    Keys
	account string
	timeout time.Duration
	log     zerolog.Logger
	slots   chan struct{}
}

// Option configures a Callout.
type Option func(*Callout)

// WithLogger logs refusals (info) and authorizations (debug); never a token.
func WithLogger(l zerolog.Logger) Option { return func(c *Callout) { c.log = l } }

// WithAccount places authorized producers in account instead of
// GlobalAccount: the account Herald's streams are in.
func WithAccount(account string) Option { return func(c *Callout) { c.account = account } }

// NewCallout returns a service signing with issuer, an account key pair:
// the server trusts responses signed by its public key (the callout's
// issuer in the server configuration).
func NewCallout(issuer nkeys.KeyPair, keys Keys, opts ...Option) (*Callout, error) {
	pub, err := issuer.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("natsauth: issuer: %w", err)
	}
	if !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("natsauth: the issuer must be an account key (seed starting with SA)")
	}
	c := &Callout{issuer: issuer, pub: pub, keys: keys, account: GlobalAccount, timeout: 2 * time.Second,
		log: zerolog.Nop(), slots: make(chan struct{}, maxInFlight)}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Issuer is the public account key a server configuration names as the
// callout's issuer.
func (c *Callout) Issuer() string { return c.pub }

// Serve answers on nc, which must be one of the server's auth users, until
// the subscription it returns is drained or nc closes.
func (c *Callout) Serve(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.QueueSubscribe(Subject, QueueGroup, func(m *nats.Msg) {
		c.slots <- struct{}{}
		go func() {
			defer func() { <-c.slots }()
			c.handle(m)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("natsauth: subscribe %s: %w", Subject, err)
	}
	// The server waits at most its auth timeout for an answer: flush, so
	// that the subscription is in place before the caller says it is ready.
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("natsauth: subscribe %s: %w", Subject, err)
	}
	return sub, nil
}

func (c *Callout) handle(m *nats.Msg) {
	if m.Header.Get("Nats-Server-Xkey") != "" {
		c.log.Error().Msg("the NATS server encrypts its authorization requests (auth_callout xkey): Herald does not; remove xkey from the server's auth_callout and use TLS")
		return
	}
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		c.log.Warn().Err(err).Msg("authorization request not understood")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	token := req.ConnectOptions.Token
	if token == "" {
		// Tools that cannot send a token may send the key as the password.
		token = req.ConnectOptions.Password
	}
	k, err := authorize(ctx, c.keys, token)
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	lg := c.log.With().Str("client_host", req.ClientInformation.Host).Str("client_name", req.ClientInformation.Name).Logger()
	switch {
	case errors.Is(err, errDenied):
		resp.Error = errDenied.Error()
		// At info: a refused client is the client's problem, but an
		// operator looking for it needs to see it. The prefix tells which
		// key (an API key's listing shows it), the key itself is never
		// logged.
		lg.Info().Str("key_prefix", store.KeyPrefix(token)).Msg("NATS client refused: no valid API key as its token")
	case err != nil:
		resp.Error = "authorization unavailable"
		lg.Warn().Err(err).Msg("NATS client refused: API keys could not be read")
	default:
		uc := jwt.NewUserClaims(req.UserNkey)
		uc.Name = UserName(k)
		uc.Audience = c.account
		uc.Permissions = Permissions(k.TenantID)
		ujwt, err := uc.Encode(c.issuer)
		if err != nil {
			resp.Error = "authorization unavailable"
			lg.Error().Err(err).Msg("NATS client refused: user JWT not signed")
			break
		}
		resp.Jwt = ujwt
		lg.Debug().Str("tenant_id", k.TenantID).Str("key_id", k.ID).Msg("NATS producer authorized")
	}
	out, err := resp.Encode(c.issuer)
	if err != nil {
		c.log.Error().Err(err).Msg("authorization response not signed")
		return
	}
	if err := m.Respond([]byte(out)); err != nil && !strings.Contains(err.Error(), "closed") {
		c.log.Warn().Err(err).Msg("authorization response not sent")
	}
}

// NewIssuer generates an account key pair for a callout and returns its
// seed, which ParseIssuer reads back.
func NewIssuer() (seed string, err error) {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return "", err
	}
	b, err := kp.Seed()
	return string(b), err
}

// ParseIssuer reads an account seed ("SA...").
func ParseIssuer(seed string) (nkeys.KeyPair, error) {
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
	if err != nil {
		return nil, errors.New("not an nkey seed")
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("not an account seed (starting with SA)")
	}
	return kp, nil
}
