package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/egress"
)

func TestAllowedRanges(t *testing.T) {
	p := egress.New()
	cases := []struct {
		addr string
		want string // substring of the error; "" means allowed
	}{
		// IPv4 refused
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "this network"},
		{"10.0.0.1", "private address (RFC 1918)"},
		{"10.255.255.255", "RFC 1918"},
		{"172.16.0.1", "RFC 1918"},
		{"172.31.255.254", "RFC 1918"},
		{"192.168.1.1", "RFC 1918"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.254", "carrier-grade NAT"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"169.254.169.254", "cloud metadata"},
		{"169.254.1.1", "link-local"},
		{"192.0.0.1", "IETF protocol assignment"},
		{"192.0.0.192", "IETF protocol assignment"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.254", "benchmarking"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "broadcast"},
		// IPv6 refused
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::a00:1", "IPv4-compatible"},
		{"fc00::1", "unique local"},
		{"fd12:3456:789a::1", "unique local"},
		{"fd00:ec2::254", "cloud metadata"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"febf:ffff::1", "link-local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"ff0e::1", "multicast"},
		{"100::1", "discard-only"},
		{"64:ff9b:1::a00:1", "local-use NAT64"},
		// IPv4 embedded in IPv6
		{"::ffff:127.0.0.1", "IPv4-mapped address embedding 127.0.0.1, a loopback address"},
		{"::ffff:10.0.0.1", "IPv4-mapped address embedding 10.0.0.1, a private address"},
		{"::ffff:169.254.169.254", "embedding 169.254.169.254, the cloud metadata address"},
		{"::ffff:0.0.0.0", "unspecified"},
		{"64:ff9b::a00:1", "NAT64 address embedding 10.0.0.1, a private address"},
		{"64:ff9b::7f00:1", "NAT64 address embedding 127.0.0.1"},
		{"64:ff9b::a9fe:a9fe", "NAT64 address embedding 169.254.169.254"},
		{"2002:c0a8:101::1", "6to4 address embedding 192.168.1.1"},
		{"2002:7f00:1::", "6to4 address embedding 127.0.0.1"},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo address embedding 127.0.0.1"}, // client ^0x80fffffe
		// public: allowed
		{"93.184.216.34", ""},
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.63.255.255", ""},  // just below CGNAT
		{"100.128.0.0", ""},     // just above CGNAT
		{"172.15.255.255", ""},  // just below 172.16/12
		{"172.32.0.0", ""},      // just above
		{"198.17.255.255", ""},  // just below benchmarking
		{"198.20.0.0", ""},      // just above
		{"223.255.255.255", ""}, // just below multicast
		{"2606:2800:220:1::", ""},
		{"2606:2800:220:1:248:1893:25c8:1946", ""},
		{"2001:4860:4860::8888", ""},
		{"::ffff:93.184.216.34", ""},
		{"64:ff9b::5db8:d822", ""},                      // NAT64 of 93.184.216.34
		{"2002:5db8:d822::1", ""},                       // 6to4 of 93.184.216.34
		{"2001:0:4136:e378:8000:63bf:a247:27dd", ""},    // Teredo of 93.184.216.34 (^a24727dd)
		{"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""}, // just below fc00::/7
		{"2001:db8::1", ""},                             // documentation: not internal
		{"fe00::1", ""},                                 // between fc00::/7 and fe80::/10
	}
	for _, c := range cases {
		t.Run(c.addr, func(t *testing.T) {
			err := p.Allowed(netip.MustParseAddr(c.addr))
			if c.want == "" {
				if err != nil {
					t.Fatalf("Allowed(%s) = %v, want nil", c.addr, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Allowed(%s) = nil, want refused (%s)", c.addr, c.want)
			}
			if !errors.Is(err, deliver.ErrBlocked) {
				t.Errorf("error %v does not wrap deliver.ErrBlocked", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), c.addr+" is ") {
				t.Errorf("Allowed(%s) = %q, want %q in it, starting with the address", c.addr, err, c.want)
			}
			var be *egress.BlockedError
			if !errors.As(err, &be) || be.Addr != netip.MustParseAddr(c.addr) {
				t.Errorf("error %#v is not a *BlockedError for %s", err, c.addr)
			}
			// AllowPrivate turns the policy off.
			if err := egress.New(egress.AllowPrivate(true)).Allowed(netip.MustParseAddr(c.addr)); err != nil {
				t.Errorf("with AllowPrivate: %v", err)
			}
		})
	}
	if err := p.Allowed(netip.Addr{}); !errors.Is(err, deliver.ErrBlocked) {
		t.Errorf("zero Addr: %v, want blocked", err)
	}
}

func TestAllowCIDRs(t *testing.T) {
	p := egress.New(egress.AllowCIDRs(
		netip.MustParsePrefix("10.20.0.0/16"),
		netip.MustParsePrefix("169.254.169.254/32"),
		netip.MustParsePrefix("fd00:1::/32"),
		netip.MustParsePrefix("192.168.7.9/24"), // not masked: still a /24
	))
	cases := []struct {
		addr  string
		allow bool
	}{
		{"10.20.0.1", true},
		{"10.20.255.255", true},
		{"10.21.0.1", false},
		{"10.0.0.1", false},
		{"::ffff:10.20.3.4", true},  // the same destination, mapped
		{"64:ff9b::a14:304", true},  // 10.20.3.4 through NAT64
		{"::ffff:10.21.3.4", false}, // not in the exception
		{"169.254.169.254", true},
		{"169.254.169.253", false},
		{"fd00:1::5", true},
		{"fd00:2::5", false},
		{"192.168.7.1", true},
		{"192.168.8.1", false},
		{"127.0.0.1", false},
		{"93.184.216.34", true},
	}
	for _, c := range cases {
		err := p.Allowed(netip.MustParseAddr(c.addr))
		if (err == nil) != c.allow {
			t.Errorf("Allowed(%s) = %v, want allowed=%v", c.addr, err, c.allow)
		}
	}
	if got := len(p.AllowedCIDRs()); got != 4 {
		t.Errorf("AllowedCIDRs has %d prefixes, want 4", got)
	}
}

// resolver answers from a map; names absent fail as not found. It counts
// lookups and can answer differently on later lookups (rebinding).
type resolver struct {
	mu      sync.Mutex
	answers map[string][][]string // name -> answer per lookup; the last one repeats
	lookups map[string]int
}

func newResolver(m map[string][]string) *resolver {
	r := &resolver{answers: map[string][][]string{}, lookups: map[string]int{}}
	for k, v := range m {
		r.answers[k] = [][]string{v}
	}
	return r
}

func (r *resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := r.lookups[host]
	r.lookups[host]++
	var out []netip.Addr
	for _, s := range seq[min(n, len(seq)-1)] {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func (r *resolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[host]
}

// receiver is a real HTTP server on 127.0.0.1 counting requests.
func receiver(t *testing.T) (port string, hits *atomic.Int32, hosts chan string) {
	t.Helper()
	hits = new(atomic.Int32)
	hosts = make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case hosts <- r.Host:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	_, port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	return port, hits, hosts
}

func send(t *testing.T, c *deliver.Client, rawURL string) deliver.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Do(ctx, deliver.Request{URL: rawURL, Body: []byte(`{}`), Timeout: 5 * time.Second})
}

// TestRebindingRefusedAtConnect: a public-looking name answering 127.0.0.1
// is refused when connecting, though a real server listens there; a name
// that resolved to a public address at registration and to loopback at
// delivery (DNS rebinding) passes CheckURL and is still refused.
func TestRebindingRefusedAtConnect(t *testing.T) {
	port, hits, hosts := receiver(t)
	res := newResolver(map[string][]string{"hooks.example.com": {"127.0.0.1"}})
	res.answers["rebind.example.com"] = [][]string{{"93.184.216.34"}, {"127.0.0.1"}}
	p := egress.New(egress.WithResolver(res))
	c := deliver.New(deliver.WithDialContext(p.DialContext))
	t.Cleanup(c.CloseIdleConnections)

	o := send(t, c, "http://hooks.example.com:"+port+"/hook")
	if o.Class != deliver.Blocked || o.Status != 0 {
		t.Fatalf("outcome %+v, want class blocked and no status", o)
	}
	if want := "hooks.example.com resolves to 127.0.0.1, a loopback address"; !strings.Contains(o.Err, want) {
		t.Errorf("Err %q, want it to say %q", o.Err, want)
	}

	ctx := context.Background()
	if err := p.CheckURL(ctx, "http://rebind.example.com:"+port+"/hook"); err != nil {
		t.Fatalf("CheckURL while the name answers a public address: %v", err)
	}
	o = send(t, c, "http://rebind.example.com:"+port+"/hook")
	if o.Class != deliver.Blocked || !strings.Contains(o.Err, "rebind.example.com resolves to 127.0.0.1") {
		t.Fatalf("after rebinding: outcome %+v, want class blocked", o)
	}
	if res.count("rebind.example.com") != 2 {
		t.Errorf("rebind.example.com looked up %d times, want 2 (once per check)", res.count("rebind.example.com"))
	}
	// Literal addresses are refused the same way, mapped forms included.
	for _, u := range []string{"http://127.0.0.1:" + port + "/", "http://[::ffff:127.0.0.1]:" + port + "/", "http://localhost:" + port + "/"} {
		if o := send(t, c, u); o.Class != deliver.Blocked {
			t.Errorf("%s: outcome %+v, want blocked", u, o)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the receiver got %d requests through the guard", n)
	}

	// With AllowPrivate the same name connects: the guard was the only
	// thing in the way, and the request still names the host.
	dev := egress.New(egress.WithResolver(res), egress.AllowPrivate(true))
	dc := deliver.New(deliver.WithDialContext(dev.DialContext))
	t.Cleanup(dc.CloseIdleConnections)
	if o := send(t, dc, "http://hooks.example.com:"+port+"/hook"); o.Status != http.StatusNoContent {
		t.Fatalf("with AllowPrivate: outcome %+v, want 204", o)
	}
	if h := <-hosts; h != "hooks.example.com:"+port {
		t.Errorf("Host %q, want hooks.example.com:%s", h, port)
	}

	// An exception for loopback opens it too.
	al := egress.New(egress.WithResolver(res), egress.AllowCIDRs(netip.MustParsePrefix("127.0.0.0/8")))
	ac := deliver.New(deliver.WithDialContext(al.DialContext))
	t.Cleanup(ac.CloseIdleConnections)
	if o := send(t, ac, "http://hooks.example.com:"+port+"/hook"); o.Status != http.StatusNoContent {
		t.Fatalf("with 127.0.0.0/8 allowed: outcome %+v, want 204", o)
	}
}

// TestMixedAnswers: refused addresses of a name are skipped, allowed ones
// dialled; a name with refused addresses only is refused.
func TestMixedAnswers(t *testing.T) {
	port, hits, _ := receiver(t)
	res := newResolver(map[string][]string{
		"mixed.example.com":  {"169.254.169.254", "10.0.0.1", "127.0.0.1"},
		"bad.example.com":    {"10.0.0.1", "fd00::1"},
		"v6only.example.com": {"2606:2800:220:1::"},
	})
	p := egress.New(egress.WithResolver(res), egress.AllowCIDRs(netip.MustParsePrefix("127.0.0.1/32")))
	c := deliver.New(deliver.WithDialContext(p.DialContext))
	t.Cleanup(c.CloseIdleConnections)
	if o := send(t, c, "http://mixed.example.com:"+port+"/"); o.Status != http.StatusNoContent {
		t.Fatalf("mixed answers: outcome %+v, want 204 from the allowed address", o)
	}
	o := send(t, c, "http://bad.example.com:"+port+"/")
	if o.Class != deliver.Blocked || !strings.Contains(o.Err, "bad.example.com resolves to 10.0.0.1, a private address") {
		t.Fatalf("all refused: outcome %+v", o)
	}
	if hits.Load() != 1 {
		t.Errorf("receiver hits %d, want 1", hits.Load())
	}
	// Unknown names are DNS failures, not policy decisions.
	if o := send(t, c, "http://nowhere.example.com:"+port+"/"); o.Class != deliver.DNS {
		t.Errorf("unknown name: outcome %+v, want class dns", o)
	}
	// tcp4 for a name with IPv6 addresses only: no address to dial.
	_, err := p.DialContext(context.Background(), "tcp4", "v6only.example.com:443")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Errorf("tcp4 to an IPv6-only name: %v, want a DNS error", err)
	}
}

func TestCheckURL(t *testing.T) {
	res := newResolver(map[string][]string{
		"public.example.com":   {"93.184.216.34"},
		"internal.example.com": {"10.1.2.3", "fd00::5"},
		"mixed.example.com":    {"10.1.2.3", "93.184.216.34"},
		"metadata.internal":    {"169.254.169.254"},
	})
	p := egress.New(egress.WithResolver(res))
	cases := []struct {
		url  string
		want string // substring of the error; "" means accepted
	}{
		{"https://public.example.com/hooks", ""},
		{"https://mixed.example.com/hooks", ""},
		{"https://not-yet-in-dns.example.com/hooks", ""}, // resolution fails: accepted, checked at delivery
		{"https://93.184.216.34/", ""},
		{"https://[2606:2800:220:1::]:8443/", ""},
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata address"},
		{"http://127.0.0.1:8080/", "127.0.0.1 is a loopback address"},
		{"http://[::1]/", "::1 is a loopback address"},
		{"http://[::ffff:10.0.0.1]/", "IPv4-mapped address embedding 10.0.0.1"},
		{"http://[64:ff9b::a00:1]/", "NAT64 address embedding 10.0.0.1"},
		{"http://[fe80::1%25eth0]/", "link-local"},
		{"http://0.0.0.0:9000/", "unspecified"},
		{"http://localhost:9000/", "localhost resolves to 127.0.0.1"},
		{"http://LOCALHOST./", "loopback"},
		{"http://api.localhost/", "loopback"},
		{"http://internal.example.com/", "internal.example.com resolves to 10.1.2.3, a private address"},
		{"http://metadata.internal/", "resolves to 169.254.169.254"},
		{"http://127.1/", "standard form"},
		{"http://2130706433/", "standard form"},
		{"http://0x7f.0.0.1/", "standard form"},
		{"http://0x7f000001/", "standard form"},
		{"http://2130706433:8080/hook", `"2130706433" is not an IP address in standard form nor a domain name (it reads as 127.0.0.1`},
		{"http://0x7f000001/", "reads as 127.0.0.1"},
		{"http://0177.0.0.1/", "reads as 127.0.0.1"},
		{"http://127.000.000.001/", "reads as 127.0.0.1"},
		{"http://169.254.43518/", "reads as 169.254.169.254"},
		{"http://1.2.3.4.5/", `"1.2.3.4.5" is not an IP address in standard form`},
		// Numeric forms are refused whatever they stand for: a public
		// address written so means different things to different readers.
		{"https://1572395042/", "reads as 93.184.216.34"},
		{"ftp://example.com/", "http or https"},
		{"/relative", "http or https"},
		{"http://", "http or https"},
	}
	for _, c := range cases {
		err := p.CheckURL(context.Background(), c.url)
		if c.want == "" {
			if err != nil {
				t.Errorf("CheckURL(%s) = %v, want accepted", c.url, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckURL(%s) = %v, want an error with %q", c.url, err, c.want)
		}
		// Every refusal but a malformed URL is a blocked destination, which
		// the API answers with 422 on url.
		if blocked := errors.Is(err, deliver.ErrBlocked); blocked != !strings.Contains(c.want, "http or https") {
			t.Errorf("CheckURL(%s) = %v: wraps deliver.ErrBlocked %v", c.url, err, blocked)
		}
	}
	if res.count("localhost") != 0 || res.count("api.localhost") != 0 {
		t.Errorf("localhost names were looked up")
	}
	// Exceptions and AllowPrivate apply to CheckURL too.
	al := egress.New(egress.WithResolver(res), egress.AllowCIDRs(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")))
	for _, u := range []string{"http://internal.example.com/", "http://10.9.9.9/", "http://localhost:9000/"} {
		if err := al.CheckURL(context.Background(), u); err != nil {
			t.Errorf("with exceptions, CheckURL(%s) = %v", u, err)
		}
	}
	dev := egress.New(egress.WithResolver(res), egress.AllowPrivate(true))
	for _, u := range []string{"http://localhost:9000/", "http://169.254.169.254/", "http://internal.example.com/"} {
		if err := dev.CheckURL(context.Background(), u); err != nil {
			t.Errorf("with AllowPrivate, CheckURL(%s) = %v", u, err)
		}
	}
	if err := dev.CheckURL(context.Background(), "gopher://x/"); err == nil {
		t.Errorf("with AllowPrivate, a gopher URL is accepted")
	}
}

// TestProxy: with an egress proxy the connection goes to the proxy (exempt,
// though on loopback) and the proxy resolves names; literal refused
// addresses and localhost never reach it.
func TestProxy(t *testing.T) {
	var seen atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.String())
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(proxy.Close)
	pu, _ := url.Parse(proxy.URL)
	res := newResolver(nil)
	p := egress.New(egress.WithResolver(res), egress.Exempt(pu.Host))
	c := deliver.New(deliver.WithDialContext(p.DialContext), deliver.WithProxy(p.Proxy(pu)))
	t.Cleanup(c.CloseIdleConnections)

	if o := send(t, c, "http://hooks.example.com/hook"); o.Status != http.StatusAccepted {
		t.Fatalf("through the proxy: outcome %+v, want 202", o)
	}
	if got := seen.Load(); got != "http://hooks.example.com/hook" {
		t.Errorf("proxy saw %v", got)
	}
	if res.count("hooks.example.com") != 0 {
		t.Errorf("the name was resolved locally; the proxy resolves it")
	}
	for _, u := range []string{"http://10.0.0.1/", "http://[::1]:8080/", "http://localhost/", "http://169.254.169.254/"} {
		seen.Store("")
		if o := send(t, c, u); o.Class != deliver.Blocked || seen.Load() != "" {
			t.Errorf("%s through the proxy: outcome %+v, proxy saw %q; want blocked before the proxy", u, o, seen.Load())
		}
	}
	// Without the exemption the loopback proxy itself is refused.
	strict := egress.New(egress.WithResolver(res))
	sc := deliver.New(deliver.WithDialContext(strict.DialContext), deliver.WithProxy(strict.Proxy(pu)))
	t.Cleanup(sc.CloseIdleConnections)
	if o := send(t, sc, "http://hooks.example.com/hook"); o.Class != deliver.Blocked {
		t.Errorf("loopback proxy not exempt: outcome %+v, want blocked", o)
	}
}
