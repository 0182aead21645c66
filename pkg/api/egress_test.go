package api_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/egress"
)

// fixedResolver answers every name with one public address, so that the
// test needs no DNS.
type fixedResolver struct{}

func (fixedResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host == "internal.example.com" {
		return []netip.Addr{netip.MustParseAddr("10.0.0.7")}, nil
	}
	if strings.HasSuffix(host, ".example.com") {
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestEndpointURLEgress: POST and PATCH /v1/endpoints refuse internal
// destinations with a 422 naming url, and accept public ones.
func TestEndpointURLEgress(t *testing.T) {
	p := egress.New(egress.WithResolver(fixedResolver{}))
	e := newEnv(t, nil, api.WithURLCheck(p.CheckURL))
	_, key := e.tenant("egress")

	refused := map[string]string{
		"http://169.254.169.254/":              "169.254.169.254 is the cloud metadata address",
		"http://localhost:9000":                "localhost resolves to 127.0.0.1, a loopback address",
		"http://127.0.0.1:8080/hook":           "127.0.0.1 is a loopback address",
		"http://[::ffff:10.0.0.1]/":            "embedding 10.0.0.1, a private address",
		"https://internal.example.com/hooks":   "internal.example.com resolves to 10.0.0.7",
		"http://[fd00:ec2::254]/latest/":       "cloud metadata",
		"http://192.168.1.20:8123/api/webhook": "private address (RFC 1918)",
	}
	for u, want := range refused {
		r := e.do("POST", "/v1/endpoints", bearer(key), map[string]any{"name": "x", "url": u, "events": []string{"*"}})
		pr := r.problem(t, http.StatusUnprocessableEntity)
		if got := pr.fields(); len(got) != 1 || got[0] != "url" {
			t.Fatalf("POST %s: fields %v, want [url]; body %s", u, got, r.body)
		}
		if msg := pr.Errors[0].Message; !strings.Contains(msg, want) || !strings.Contains(msg, "not allowed") {
			t.Errorf("POST %s: message %q, want %q in it", u, msg, want)
		}
	}
	// Numeric forms of IPv4 that resolvers read differently are refused at
	// registration, whatever address they stand for, with what to write.
	for _, u := range []string{"http://2130706433/", "http://0x7f000001:8080/", "http://0177.0.0.1/", "http://127.1/", "https://1572395042/hooks"} {
		r := e.do("POST", "/v1/endpoints", bearer(key), map[string]any{"name": "x", "url": u, "events": []string{"*"}})
		pr := r.problem(t, http.StatusUnprocessableEntity)
		if got := pr.fields(); len(got) != 1 || got[0] != "url" {
			t.Fatalf("POST %s: fields %v, want [url]; body %s", u, got, r.body)
		}
		if msg := pr.Errors[0].Message; !strings.Contains(msg, "not an IP address in standard form") || !strings.Contains(msg, "four decimal numbers") {
			t.Errorf("POST %s: message %q", u, msg)
		}
	}

	ep := e.endpoint(key, map[string]any{"url": "https://hooks.example.com/in"})
	id := ep["id"].(string)
	// A name that does not resolve yet is accepted (checked at delivery).
	e.endpoint(key, map[string]any{"url": "https://unknown.test/in"})

	r := e.do("PATCH", "/v1/endpoints/"+id, bearer(key), map[string]any{"url": "http://169.254.169.254/latest/meta-data/"})
	if got := r.problem(t, http.StatusUnprocessableEntity).fields(); len(got) != 1 || got[0] != "url" {
		t.Fatalf("PATCH to metadata: fields %v", got)
	}
	got := e.do("GET", "/v1/endpoints/"+id, bearer(key), nil).json(t)
	if got["url"] != "https://hooks.example.com/in" {
		t.Fatalf("refused PATCH changed the URL to %v", got["url"])
	}
	// A PATCH not touching the URL is not checked; a public URL is accepted.
	if r := e.do("PATCH", "/v1/endpoints/"+id, bearer(key), map[string]any{"name": "renamed"}); r.status != http.StatusOK {
		t.Fatalf("PATCH name: %d %s", r.status, r.body)
	}
	if r := e.do("PATCH", "/v1/endpoints/"+id, bearer(key), map[string]any{"url": "https://other.example.com/in"}); r.status != http.StatusOK {
		t.Fatalf("PATCH public URL: %d %s", r.status, r.body)
	}
	// A malformed URL is reported by validation, with the other fields.
	r = e.do("POST", "/v1/endpoints", bearer(key), map[string]any{"name": "", "url": "ftp://x/", "events": []string{"*"}})
	if got := r.problem(t, http.StatusUnprocessableEntity).fields(); strings.Join(got, ",") != "name,url" {
		t.Fatalf("malformed: fields %v, want [name url]", got)
	}

	// The development setting accepts them all.
	dev := newEnv(t, nil, api.WithURLCheck(egress.New(egress.AllowPrivate(true)).CheckURL))
	_, dkey := dev.tenant("dev")
	for u := range refused {
		dev.endpoint(dkey, map[string]any{"url": u})
	}
}
