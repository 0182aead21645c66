package service

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestEgressConfig(t *testing.T) {
	t.Setenv("HERALD_EGRESS_ALLOW_CIDRS", " 10.20.0.0/16, fd00:1::/32,192.168.7.9/24 ,127.0.0.1,")
	t.Setenv("HERALD_EGRESS_PROXY", "http://user:pw@egress-proxy:3128")
	c, err := FromEnv(Config{EgressAllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd00:1::/32"),
		netip.MustParsePrefix("192.168.7.0/24"), netip.MustParsePrefix("127.0.0.1/32"),
	}
	if !slices.Equal(c.EgressAllowCIDRs, want) || !c.EgressAllowPrivate || c.EgressProxy == "" {
		t.Fatalf("config %v %v %q", c.EgressAllowCIDRs, c.EgressAllowPrivate, c.EgressProxy)
	}
	t.Setenv("HERALD_EGRESS_ALLOW_PRIVATE", "false")
	if c, _ := FromEnv(Config{EgressAllowPrivate: true}); c.EgressAllowPrivate {
		t.Errorf("HERALD_EGRESS_ALLOW_PRIVATE=false did not override the default")
	}

	for env, bad := range map[string]string{
		"HERALD_EGRESS_ALLOW_CIDRS": "10.0.0.0/33",
		"HERALD_EGRESS_PROXY":       "socks5://proxy:1080",
	} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, bad)
			if _, err := FromEnv(Config{}); err == nil || !strings.Contains(err.Error(), env) {
				t.Errorf("%s=%s: %v, want an error naming it", env, bad, err)
			}
		})
	}
	for _, c := range [][4]string{{"http", "proxy", "", "proxy:80"}, {"https", "proxy", "", "proxy:443"}, {"http", "::1", "3128", "[::1]:3128"}} {
		if got := proxyDialAddr(c[0], c[1], c[2]); got != c[3] {
			t.Errorf("proxyDialAddr(%v) = %s, want %s", c[:3], got, c[3])
		}
	}
}
