package cache

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/store"
)

// TestLastChangeBothWays: the leader's answer (replicated buckets) and the
// direct get (one server) name the same last endpoint change, and 0 before
// there is any; a tenant written after it is not an endpoint change.
func TestLastChangeBothWays(t *testing.T) {
	js := testenv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	c := New(st, st.KV(), WithJetStream(js))
	both := func() (leader, direct uint64) {
		t.Helper()
		for _, d := range []bool{false, true} {
			c.direct.Store(d)
			seq, err := c.lastChange(ctx)
			if err != nil {
				t.Fatalf("lastChange (direct %v): %v", d, err)
			}
			if d {
				direct = seq
			} else {
				leader = seq
			}
		}
		return leader, direct
	}
	if l, d := both(); l != 0 || d != 0 {
		t.Fatalf("no endpoint yet: last change %d (leader), %d (direct); want 0", l, d)
	}
	tn, _, err := st.CreateTenant(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateEndpoint(ctx, tn.ID, store.Endpoint{Name: "e", URL: "https://example.com/h", Events: []string{"*"}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	l, d := both()
	if l == 0 || l != d {
		t.Fatalf("after an endpoint was created: last change %d (leader), %d (direct); want the same, above 0", l, d)
	}
	if _, _, err := st.CreateTenant(ctx, "B"); err != nil {
		t.Fatal(err)
	}
	if l2, d2 := both(); l2 != l || d2 != d {
		t.Fatalf("a tenant written: last change %d/%d, was %d: only endpoint keys are changes", l2, d2, l)
	}
}
