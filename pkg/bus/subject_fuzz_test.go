package bus_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/match"
)

// FuzzParseEventSubject checks the mapping between subjects and (tenant,
// type): ParseEventSubject never panics; what it accepts maps back to the
// same subject through EventSubject, with a tenant that is one subject
// token; and every valid tenant and type round-trip through EventSubject.
// Seeds live in testdata/fuzz/FuzzParseEventSubject.
func FuzzParseEventSubject(f *testing.F) {
	f.Fuzz(func(t *testing.T, subject, tenant, typ string) {
		tn, ty, ok := bus.ParseEventSubject(subject)
		if !ok {
			if tn != "" || ty != "" {
				t.Fatalf("ParseEventSubject(%q) = %q, %q, false: parts on a refusal", subject, tn, ty)
			}
		} else {
			if tn == "" || ty == "" || strings.Contains(tn, ".") {
				t.Fatalf("ParseEventSubject(%q) = %q, %q: empty part or a dotted tenant", subject, tn, ty)
			}
			if back := bus.EventSubject(tn, ty); back != subject {
				t.Fatalf("ParseEventSubject(%q) = %q, %q, but EventSubject gives %q", subject, tn, ty, back)
			}
			if !strings.HasPrefix(subject, bus.EventsPrefix) {
				t.Fatalf("accepted %q without the events prefix", subject)
			}
		}
		if !event.IsToken(tenant) || match.ValidateType(typ) != nil {
			return
		}
		s := bus.EventSubject(tenant, typ)
		if tn, ty, ok := bus.ParseEventSubject(s); !ok || tn != tenant || ty != typ {
			t.Fatalf("EventSubject(%q, %q) = %q parses as %q, %q, %v", tenant, typ, s, tn, ty, ok)
		}
		// The type's dots are subject tokens: a consumer filtering on
		// herald.events.<tenant>.> sees every type of the tenant.
		if got := strings.Count(s, "."); got != 3+strings.Count(typ, ".") {
			t.Fatalf("EventSubject(%q, %q) = %q has %d dots", tenant, typ, s, got)
		}
	})
}
