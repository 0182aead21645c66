package service

import (
	"context"
	"net"
	"net/netip"

	"github.com/heraldhq/herald/pkg/health"
)

// ProbeURL is where a process configured by cfg answers its probes, seen
// from the same host: http:// and its HTTPAddr, a wildcard host (0.0.0.0,
// ::, none, as in containers) replaced by loopback.
func ProbeURL(cfg Config) string {
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return "http://" + cfg.HTTPAddr
	}
	if a, err := netip.ParseAddr(host); host == "" || err == nil && a.IsUnspecified() {
		host = "127.0.0.1"
		if err == nil && a.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Healthcheck asks the process that def and the environment configure,
// running on this host, for the probe at path (health.PathReady, ...) and
// returns nil when it answers 200. It is every binary's healthcheck
// command: it reads the same settings as the process (HERALD_HTTP_ADDR),
// so that a distroless image, which has no curl, can have a Docker
// HEALTHCHECK.
func Healthcheck(ctx context.Context, def Config, path string) error {
	cfg, err := readEnv(def, lookupEnv)
	if err != nil {
		return err
	}
	return health.Probe(ctx, ProbeURL(cfg.withDefaults()), path)
}
