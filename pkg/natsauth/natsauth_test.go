package natsauth

import (
	"slices"
	"testing"

	"github.com/heraldhq/herald/pkg/store"
)

func TestUserNameRoundTrip(t *testing.T) {
	k := store.APIKey{ID: "key_01", TenantID: "tn_01", Hash: "ab12"}
	tenant, id, hash, ok := parseUserName(UserName(k))
	if !ok || tenant != k.TenantID || id != k.ID || hash != k.Hash {
		t.Fatalf("parseUserName(UserName(k)) = %q %q %q %v", tenant, id, hash, ok)
	}
	for _, other := range []string{"herald", "herald-system", "", "herald-key/", "herald-key/tn/key", "herald-key/tn/key/h/x", "herald-key//key/h"} {
		if _, _, _, ok := parseUserName(other); ok {
			t.Errorf("parseUserName(%q) took it for a producer", other)
		}
	}
}

// The permissions are exactly the tenant's events, the object store Put,
// and its inbox: any widening must change this test.
func TestPermissionsAreExact(t *testing.T) {
	p := Permissions("tn_A")
	wantPub := []string{
		"herald.events.tn_A.>",
		"$JS.API.STREAM.INFO.OBJ_herald-payloads",
		"$JS.API.DIRECT.GET.OBJ_herald-payloads.$O.herald-payloads.M.*",
		"$O.herald-payloads.C.*",
		"$O.herald-payloads.M.*",
	}
	if !slices.Equal([]string(p.Pub.Allow), wantPub) || len(p.Pub.Deny) != 0 {
		t.Errorf("publish allow %v deny %v, want %v", p.Pub.Allow, p.Pub.Deny, wantPub)
	}
	if !slices.Equal([]string(p.Sub.Allow), []string{"_INBOX_tn_A.>"}) {
		t.Errorf("subscribe allow %v, want _INBOX_tn_A.>", p.Sub.Allow)
	}
}

func TestParseIssuerWantsAnAccountSeed(t *testing.T) {
	seed, err := NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseIssuer(seed); err != nil {
		t.Fatalf("ParseIssuer(NewIssuer()): %v", err)
	}
	for _, bad := range []string{"", "SA", "not a seed", "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4"} {
		if _, err := ParseIssuer(bad); err == nil {
			t.Errorf("ParseIssuer(%q) accepted it", bad)
		}
	}
}
