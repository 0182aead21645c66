package egress

import (
	"errors"
	"testing"

	"github.com/heraldhq/herald/pkg/deliver"
)

// TestControl checks the dialer's second line of defence on its own: the
// socket address is checked whatever DialContext decided.
func TestControl(t *testing.T) {
	p := New()
	for _, a := range []string{"127.0.0.1:80", "[::1]:443", "[fe80::1%eth0]:80", "169.254.169.254:80", "[::ffff:10.0.0.1]:80", "not an address"} {
		if err := p.control("tcp", a, nil); !errors.Is(err, deliver.ErrBlocked) {
			t.Errorf("control(%s) = %v, want blocked", a, err)
		}
	}
	for _, a := range []string{"93.184.216.34:443", "[2606:2800:220:1::]:443"} {
		if err := p.control("tcp", a, nil); err != nil {
			t.Errorf("control(%s) = %v, want nil", a, err)
		}
	}
	if err := New(AllowPrivate(true)).control("tcp", "127.0.0.1:80", nil); err != nil {
		t.Errorf("with AllowPrivate: %v", err)
	}
}
