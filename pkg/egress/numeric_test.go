package egress

import (
	"net/netip"
	"testing"
)

// shorthandIPv4 reads hosts as inet_aton does.
func TestShorthandIPv4(t *testing.T) {
	for _, c := range []struct {
		host string
		want string // "" for not a form inet_aton reads
	}{
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0X7F000001", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"127.000.000.001", "127.0.0.1"},
		{"10.0x10203", "10.1.2.3"},
		{"169.254.43518", "169.254.169.254"},
		{"0", "0.0.0.0"},
		{"1.2.3.4.", "1.2.3.4"},
		{"4294967295", "255.255.255.255"},
		{"4294967296", ""}, // more than 32 bits
		{"256.1", ""},      // a part but the last over 255
		{"1.2.3.256", ""},
		{"1.2.3.4.5", ""},
		{"08", ""}, // not octal
		{"0x", ""},
		{"1..2", ""},
		{"example.com", ""},
	} {
		got, ok := shorthandIPv4(c.host)
		if c.want == "" {
			if ok {
				t.Errorf("shorthandIPv4(%q) = %s, want none", c.host, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(c.want) {
			t.Errorf("shorthandIPv4(%q) = %s %v, want %s", c.host, got, ok, c.want)
		}
	}
}
