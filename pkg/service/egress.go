package service

import (
	"net"
	"strings"

	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/egress"
)

// egressPolicy builds the senders' egress policy from cfg and the options
// of the delivery client that enforce it, and says once in the log what it
// allows. With a proxy, every connection goes to the proxy, whose own
// address is exempt from the policy: the operator chose it, and it does the
// egress (see docs/operations.md).
func egressPolicy(cfg Config, log zerolog.Logger) (*egress.Policy, []deliver.Option, error) {
	opts := []egress.Option{egress.AllowPrivate(cfg.EgressAllowPrivate), egress.AllowCIDRs(cfg.EgressAllowCIDRs...)}
	if cfg.EgressProxy == "" {
		pol := egress.New(opts...)
		logEgress(log, cfg, "")
		return pol, []deliver.Option{deliver.WithDialContext(pol.DialContext)}, nil
	}
	u, err := ParseProxy(cfg.EgressProxy)
	if err != nil {
		return nil, nil, err
	}
	pol := egress.New(append(opts, egress.Exempt(proxyDialAddr(u.Scheme, u.Hostname(), u.Port())))...)
	logEgress(log, cfg, maskCredentials(u.String()))
	return pol, []deliver.Option{deliver.WithDialContext(pol.DialContext), deliver.WithProxy(pol.Proxy(u))}, nil
}

// proxyDialAddr is the address net/http dials for a proxy URL: its host and
// port, or the scheme's default port.
func proxyDialAddr(scheme, host, port string) string {
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(host, port)
}

func logEgress(log zerolog.Logger, cfg Config, proxy string) {
	cidrs := make([]string, len(cfg.EgressAllowCIDRs))
	for i, p := range cfg.EgressAllowCIDRs {
		cidrs[i] = p.String()
	}
	ev := log.Info().Bool("allow_private", cfg.EgressAllowPrivate).Str("allow_cidrs", strings.Join(cidrs, ",")).Str("proxy", proxy)
	if cfg.EgressAllowPrivate {
		ev.Msg("egress: private destinations ALLOWED (development mode): deliveries may reach loopback, private and link-local addresses")
		return
	}
	ev.Msg("egress: private destinations refused (loopback, private, link-local, cloud metadata, CGNAT, multicast); exceptions from HERALD_EGRESS_ALLOW_CIDRS")
}
