// Package egress is Herald's outbound (SSRF) guard: it decides which
// addresses senders may connect to, and enforces it where it cannot be
// got around, at connect time.
//
// A webhook URL is chosen by a tenant, and Herald calls it from inside the
// operator's network. Without a guard, a tenant could register
// http://169.254.169.254/ (cloud metadata), http://localhost:6379/ or
// http://10.0.0.5/admin and read or poke at what only Herald can reach. By
// default a Policy refuses loopback, private (RFC 1918, RFC 4193),
// link-local, carrier-grade NAT, multicast, unspecified, broadcast and
// reserved ranges, for IPv4, IPv6, and IPv4 addresses embedded in IPv6
// (IPv4-mapped, NAT64, 6to4, Teredo). AllowCIDRs opens exceptions;
// AllowPrivate turns the policy off, for development.
//
// Checking a URL when it is registered is not enough: a name may resolve to
// a public address then and to 127.0.0.1 at delivery time (DNS rebinding),
// or differently on every lookup. DialContext therefore resolves the name
// itself, checks every address, and connects to the checked address, never
// to the name; a net.Dialer Control hook checks the socket's address once
// more before connecting. CheckURL is the early, friendly check for the
// API; DialContext is the guard.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
)

// Resolver resolves host names; net.DefaultResolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy decides which destinations may be connected to. It is safe for
// concurrent use and immutable once built.
type Policy struct {
	allowPrivate bool
	allow        []netip.Prefix
	resolver     Resolver
	exempt       map[string]bool
	dialer       net.Dialer // checks every socket address (Control)
	plain        net.Dialer // for exempt addresses
}

// An Option configures a Policy.
type Option func(*Policy)

// AllowCIDRs allows destinations in the given prefixes even when they fall
// in a refused range, e.g. 10.20.0.0/16 for receivers on a peered network.
// An IPv4 prefix also allows that address mapped or embedded in IPv6.
func AllowCIDRs(prefixes ...netip.Prefix) Option {
	return func(p *Policy) {
		for _, pr := range prefixes {
			if pr.IsValid() {
				p.allow = append(p.allow, pr.Masked())
			}
		}
	}
}

// AllowPrivate turns the policy off when true: every address is allowed,
// loopback and private included. It is for development on one machine
// (`make run`), never for a deployment that serves untrusted tenants.
func AllowPrivate(allow bool) Option { return func(p *Policy) { p.allowPrivate = allow } }

// WithResolver sets the resolver of DialContext and CheckURL (default
// net.DefaultResolver).
func WithResolver(r Resolver) Option { return func(p *Policy) { p.resolver = r } }

// Exempt names host:port addresses that DialContext connects to without
// checking, exactly as given: the egress proxy's. The operator configured
// them, and with a proxy every connection goes to it (the transport dials
// the proxy, never the receiver), so the proxy, not this policy, decides
// which receivers are reached.
func Exempt(hostports ...string) Option {
	return func(p *Policy) {
		for _, hp := range hostports {
			p.exempt[strings.ToLower(hp)] = true
		}
	}
}

// New returns a policy that refuses internal destinations, adjusted by opts.
func New(opts ...Option) *Policy {
	p := &Policy{resolver: net.DefaultResolver, exempt: map[string]bool{}}
	for _, o := range opts {
		o(p)
	}
	p.dialer = net.Dialer{KeepAlive: 30 * time.Second, Control: p.control}
	p.plain = net.Dialer{KeepAlive: 30 * time.Second}
	return p
}

// AllowsPrivate reports whether the policy is off (AllowPrivate).
func (p *Policy) AllowsPrivate() bool { return p.allowPrivate }

// AllowedCIDRs returns the exceptions (AllowCIDRs).
func (p *Policy) AllowedCIDRs() []netip.Prefix { return append([]netip.Prefix(nil), p.allow...) }

// BlockedError is a refused destination. It wraps deliver.ErrBlocked, so a
// delivery refused at connect time is classified deliver.Blocked.
type BlockedError struct {
	Host   string     // the name that resolved to Addr; empty for a literal address
	Addr   netip.Addr // the refused address
	Reason string     // what the address is, e.g. "a loopback address"
}

func (e *BlockedError) Error() string {
	if e.Host != "" {
		return e.Host + " resolves to " + e.Addr.String() + ", " + e.Reason
	}
	return e.Addr.String() + " is " + e.Reason
}

// Unwrap returns deliver.ErrBlocked.
func (e *BlockedError) Unwrap() error { return deliver.ErrBlocked }

// Allowed returns nil when addr may be connected to, else a *BlockedError
// (wrapping deliver.ErrBlocked) naming the range it falls in.
func (p *Policy) Allowed(addr netip.Addr) error {
	if !addr.IsValid() {
		return &BlockedError{Addr: addr, Reason: "not a valid IP address"}
	}
	if p.allowPrivate {
		return nil
	}
	a := addr.WithZone("")
	v4, kind, embeds := embedded(a)
	if p.allowlisted(a) || embeds && p.allowlisted(v4) {
		return nil
	}
	if embeds {
		if r := reason(v4); r != "" {
			return &BlockedError{Addr: addr, Reason: fmt.Sprintf("%s address embedding %s, %s", kind, v4, r)}
		}
		if kind == "an IPv4-mapped" {
			return nil // exactly the IPv4 address: nothing else to check
		}
	}
	if r := reason(a); r != "" {
		return &BlockedError{Addr: addr, Reason: r}
	}
	return nil
}

func (p *Policy) allowlisted(a netip.Addr) bool {
	for _, pr := range p.allow {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

type blockedRange struct {
	prefix netip.Prefix
	reason string
}

// blocked lists the refused ranges, most specific first: the first match
// names the range in errors.
var blocked = func() []blockedRange {
	rs := []struct{ cidr, reason string }{
		// IPv4
		{"0.0.0.0/32", "the unspecified address"},
		{"0.0.0.0/8", `a "this network" address (0.0.0.0/8)`},
		{"10.0.0.0/8", "a private address (RFC 1918)"},
		{"100.64.0.0/10", "a carrier-grade NAT address (100.64.0.0/10, RFC 6598)"},
		{"127.0.0.0/8", "a loopback address"},
		{"169.254.169.254/32", "the cloud metadata address (link-local)"},
		{"169.254.0.0/16", "a link-local address"},
		{"172.16.0.0/12", "a private address (RFC 1918)"},
		{"192.0.0.0/24", "an IETF protocol assignment address (192.0.0.0/24; Oracle Cloud metadata lives here)"},
		{"192.168.0.0/16", "a private address (RFC 1918)"},
		{"198.18.0.0/15", "a benchmarking address (198.18.0.0/15)"},
		{"224.0.0.0/4", "a multicast address"},
		{"255.255.255.255/32", "the broadcast address"},
		{"240.0.0.0/4", "a reserved address (240.0.0.0/4)"},
		// IPv6
		{"::/128", "the unspecified address"},
		{"::1/128", "a loopback address"},
		{"::/96", "a deprecated IPv4-compatible address (::/96)"},
		{"64:ff9b:1::/48", "a local-use NAT64 address (64:ff9b:1::/48, RFC 8215)"},
		{"100::/64", "a discard-only address (100::/64)"},
		{"fd00:ec2::254/128", "the cloud metadata address (AWS, IPv6)"},
		{"fc00::/7", "a private (unique local) address (fc00::/7, RFC 4193)"},
		{"fe80::/10", "a link-local address"},
		{"fec0::/10", "a site-local address (fec0::/10, deprecated)"},
		{"ff00::/8", "a multicast address"},
	}
	out := make([]blockedRange, len(rs))
	for i, r := range rs {
		out[i] = blockedRange{netip.MustParsePrefix(r.cidr), r.reason}
	}
	return out
}()

// reason names the refused range a falls in, or "" when a is allowed.
func reason(a netip.Addr) string {
	for _, r := range blocked {
		if r.prefix.Contains(a) {
			return r.reason
		}
	}
	return ""
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	teredo    = netip.MustParsePrefix("2001::/32")
)

// embedded returns the IPv4 address an IPv6 address stands for, when it is
// one of the forms that route to an IPv4 destination: IPv4-mapped
// (::ffff:a.b.c.d), NAT64 (64:ff9b::/96, RFC 6052), 6to4 (2002::/16) and
// Teredo (2001::/32, the client's obfuscated address).
func embedded(a netip.Addr) (v4 netip.Addr, kind string, ok bool) {
	if a.Is4In6() {
		return a.Unmap(), "an IPv4-mapped", true
	}
	if !a.Is6() {
		return netip.Addr{}, "", false
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "a NAT64", true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), "a 6to4", true
	case teredo.Contains(a):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), "a Teredo", true
	}
	return netip.Addr{}, "", false
}

// isLocalhost reports whether host is localhost or a name under .localhost,
// which resolve to loopback by definition (RFC 6761) and are never looked
// up.
func isLocalhost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}

// localhostAllowed checks a localhost name without resolving it: allowed
// when one of its loopback addresses is.
func (p *Policy) localhostAllowed(host string) error {
	for _, a := range loopback {
		if p.Allowed(a) == nil {
			return nil
		}
	}
	return &BlockedError{Host: host, Addr: loopback[0], Reason: "a loopback address (localhost names always are)"}
}

// lookup returns the addresses of host for network ("ip", "ip4" or "ip6"):
// a literal address as is, localhost names as loopback, other names from
// the resolver.
func (p *Policy) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if isLocalhost(host) {
		return loopback, nil
	}
	addrs, err := p.resolver.LookupNetIP(ctx, network, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

// DialContext connects as net.Dialer.DialContext does, but only to allowed
// addresses: it resolves the host itself, checks every address, and dials
// the allowed ones by IP, in the resolver's order, so that what was checked
// is what is connected to (a rebinding name cannot swap in another address
// between check and connect). A destination whose addresses are all
// refused fails with a *BlockedError (wrapping deliver.ErrBlocked);
// refused addresses of a name that also has allowed ones are skipped. Give
// it to deliver.WithDialContext.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if p.exempt[strings.ToLower(address)] {
		return p.plain.DialContext(ctx, network, address)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	ipNet, err := ipNetwork(network)
	if err != nil {
		return nil, err
	}
	port, err := p.port(ctx, network, portStr)
	if err != nil {
		return nil, err
	}
	addrs, err := p.lookup(ctx, ipNet, host)
	if err != nil {
		return nil, err
	}
	name := host
	if _, err := netip.ParseAddr(host); err == nil {
		name = ""
	}
	var allowed []netip.Addr
	var refused error
	for _, a := range addrs {
		if !family(ipNet, a) {
			continue
		}
		if err := p.Allowed(a); err != nil {
			if refused == nil {
				be := err.(*BlockedError)
				be.Host = name
				refused = be
			}
			continue
		}
		allowed = append(allowed, a)
	}
	if len(allowed) == 0 {
		if refused == nil {
			return nil, &net.DNSError{Err: "no " + ipNet + " address", Name: host, IsNotFound: true}
		}
		return nil, fmt.Errorf("egress policy: %w", refused)
	}
	var first error
	for i, a := range allowed {
		dctx := ctx
		if dl, ok := ctx.Deadline(); ok {
			// Share the time left among the addresses left, as net.Dialer does.
			pdl, err := partialDeadline(time.Now(), dl, len(allowed)-i)
			if err != nil {
				if first == nil {
					first = err
				}
				break
			}
			var cancel context.CancelFunc
			dctx, cancel = context.WithDeadline(ctx, pdl)
			defer cancel()
		}
		c, err := p.dialer.DialContext(dctx, network, netip.AddrPortFrom(a.Unmap(), port).String())
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// control is the dialer's last check, on the address the socket is about
// to connect to.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress policy: cannot check socket address %q: %w", address, deliver.ErrBlocked)
	}
	if err := p.Allowed(ap.Addr()); err != nil {
		return fmt.Errorf("egress policy: %w", err)
	}
	return nil
}

func (p *Policy) port(ctx context.Context, network, s string) (uint16, error) {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return uint16(n), nil
	}
	n, err := net.DefaultResolver.LookupPort(ctx, network, s)
	if err != nil {
		return 0, err
	}
	return uint16(n), nil
}

func ipNetwork(network string) (string, error) {
	switch network {
	case "tcp", "udp":
		return "ip", nil
	case "tcp4", "udp4":
		return "ip4", nil
	case "tcp6", "udp6":
		return "ip6", nil
	}
	return "", fmt.Errorf("egress: network %q is not supported", network)
}

func family(ipNet string, a netip.Addr) bool {
	switch ipNet {
	case "ip4":
		return a.Unmap().Is4()
	case "ip6":
		return a.Is6() && !a.Is4In6()
	}
	return true
}

func partialDeadline(now, deadline time.Time, left int) (time.Time, error) {
	remaining := deadline.Sub(now)
	if remaining <= 0 {
		return time.Time{}, context.DeadlineExceeded
	}
	timeout := remaining / time.Duration(left)
	const saneMinimum = 2 * time.Second
	if timeout < saneMinimum {
		timeout = min(remaining, saneMinimum)
	}
	return now.Add(timeout), nil
}

// checkTimeout bounds CheckURL's name resolution.
const checkTimeout = 3 * time.Second

// CheckURL is the check at endpoint creation: it returns an error when
// rawURL is not an http or https URL, or (wrapping deliver.ErrBlocked) when
// its host is a literal address in a refused range, localhost or a name
// under .localhost, or a name all of whose addresses are refused (a
// *BlockedError), or an ambiguous numeric form such as 127.1, 2130706433
// or 0x7f000001 (a *NumericHostError, whatever address it stands for).
//
// A name that does not resolve is accepted: endpoints are often registered
// before their DNS exists, and a name may resolve differently later. The
// dial-time check (DialContext) is the guard; CheckURL only turns the
// obvious mistakes and attempts away early with a clear message.
func (p *Policy) CheckURL(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("must be an absolute http or https URL")
	}
	if p.allowPrivate {
		return nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return p.Allowed(a)
	}
	if isLocalhost(host) {
		return p.localhostAllowed(host)
	}
	if numericHost(host) {
		a, _ := shorthandIPv4(host)
		return &NumericHostError{Host: host, Addr: a}
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil // see above: DialContext decides at delivery time
	}
	var refused error
	for _, a := range addrs {
		err := p.Allowed(a)
		if err == nil {
			return nil
		}
		if refused == nil {
			be := err.(*BlockedError)
			be.Host = host
			refused = be
		}
	}
	return refused
}

// NumericHostError is a URL host that is neither an IPv4 address in
// standard form nor a domain name, but a number: 2130706433, 0x7f000001,
// 0177.0.0.1, 127.1. C libraries (inet_aton) and browsers read such forms
// as IPv4 addresses, Go's resolver does not, and filters written for
// dotted quads miss them: they are how SSRF checks are got around.
// CheckURL refuses them whatever address they stand for, so that a URL
// means one destination to everyone who reads it. It wraps
// deliver.ErrBlocked.
type NumericHostError struct {
	Host string
	// Addr is the IPv4 address inet_aton reads Host as; not valid when it
	// reads none (too many parts, a part out of range).
	Addr netip.Addr
}

func (e *NumericHostError) Error() string {
	msg := fmt.Sprintf("host %q is not an IP address in standard form nor a domain name", e.Host)
	if e.Addr.IsValid() {
		msg += fmt.Sprintf(" (it reads as %s in the decimal, hex, octal or short dotted form of IPv4)", e.Addr)
	}
	return msg + "; write IPv4 addresses as four decimal numbers"
}

// Unwrap returns deliver.ErrBlocked.
func (e *NumericHostError) Unwrap() error { return deliver.ErrBlocked }

// shorthandIPv4 reads host as inet_aton does: one to four parts separated
// by dots, each decimal, hex (0x) or octal (a leading 0), the last filling
// the bytes the others leave (127.1 is 127.0.0.1, 2130706433 is
// 127.0.0.1). It reports false when host is not such a form.
func shorthandIPv4(host string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var out [4]byte
	for i, p := range parts {
		base := 10
		switch lp := strings.ToLower(p); {
		case strings.HasPrefix(lp, "0x"):
			base, p = 16, lp[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		// Each part but the last is one byte; the last fills the rest.
		bits := 8
		if i == len(parts)-1 {
			bits = 8 * (4 - i)
		}
		n, err := strconv.ParseUint(p, base, bits)
		if err != nil || p == "" || p[0] == '+' || p[0] == '-' {
			return netip.Addr{}, false
		}
		for j := i + bits/8 - 1; j >= i; j-- {
			out[j], n = byte(n), n>>8
		}
	}
	return netip.AddrFrom4(out), true
}

// numericHost reports whether host's last label is numeric (decimal, or
// hex with 0x): not a domain name (no top-level domain is numeric), but a
// form some resolvers read as an IPv4 address (127.1, 2130706433,
// 0x7f.0.0.1).
func numericHost(host string) bool {
	h := strings.TrimSuffix(host, ".")
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return false
	}
	if l := strings.ToLower(last); strings.HasPrefix(l, "0x") {
		last = l[2:]
		return strings.Trim(last, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

// Proxy returns a deliver.WithProxy function sending every request through
// the proxy at u. Requests whose host is a literal refused address or a
// localhost name are refused before reaching the proxy (with an error
// wrapping deliver.ErrBlocked); other names are resolved by the proxy,
// which must refuse internal destinations itself (Smokescreen, Squid ACLs,
// a cloud NAT with no route inward).
func (p *Policy) Proxy(u *url.URL) func(*http.Request) (*url.URL, error) {
	return func(r *http.Request) (*url.URL, error) {
		if !p.allowPrivate {
			host := r.URL.Hostname()
			if a, err := netip.ParseAddr(host); err == nil {
				if err := p.Allowed(a); err != nil {
					return nil, fmt.Errorf("egress policy: %w", err)
				}
			} else if isLocalhost(host) {
				if err := p.localhostAllowed(host); err != nil {
					return nil, fmt.Errorf("egress policy: %w", err)
				}
			}
		}
		return u, nil
	}
}
