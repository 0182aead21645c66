package event_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/valid"
)

// fields returns the fields named by a validation error, sorted, or nil when
// err is not a valid.Errors.
func fields(err error) []string {
	var ve valid.Errors
	if !errors.As(err, &ve) {
		return nil
	}
	out := make([]string, 0, len(ve))
	for _, f := range ve {
		out = append(out, f.Field)
	}
	slices.Sort(out)
	return out
}

func TestParse(t *testing.T) {
	long := strings.Repeat("a", event.MaxIDLength)
	tests := []struct {
		name      string
		in        string
		malformed bool     // want ErrMalformed
		invalid   []string // want valid.Errors naming exactly these fields
		want      event.Input
	}{
		{name: "minimal", in: `{"type":"user.created","data":{}}`,
			want: event.Input{Type: "user.created", Data: []byte(`{}`)}},
		{name: "all fields and surrounding whitespace", in: " \n{\"id\":\"ord-1\",\"type\":\"a-b_c.D9\",\"data\":[1, 2],\"endpoint_id\":\"ep_01\"}\n\t",
			want: event.Input{ID: "ord-1", Type: "a-b_c.D9", Data: []byte(`[1, 2]`), EndpointID: "ep_01"}},
		{name: "data false is a value", in: `{"type":"t","data":false}`, want: event.Input{Type: "t", Data: []byte(`false`)}},
		{name: "data zero is a value", in: `{"type":"t","data":0}`, want: event.Input{Type: "t", Data: []byte(`0`)}},
		{name: "data empty string is a value", in: `{"type":"t","data":""}`, want: event.Input{Type: "t", Data: []byte(`""`)}},
		{name: "data bytes kept as sent", in: `{"type":"t","data":{ "b" : 1.0e2,"a":"\u00e9" }}`,
			want: event.Input{Type: "t", Data: []byte(`{ "b" : 1.0e2,"a":"\u00e9" }`)}},
		{name: "id of max length", in: `{"id":"` + long + `","type":"t","data":1}`,
			want: event.Input{ID: long, Type: "t", Data: []byte(`1`)}},
		{name: "id printable ASCII punctuation", in: `{"id":"a/b:c~!","type":"t","data":1}`,
			want: event.Input{ID: "a/b:c~!", Type: "t", Data: []byte(`1`)}},

		{name: "unknown field", in: `{"type":"t","data":1,"extra":1}`, malformed: true},
		{name: "field in wrong case is unknown", in: `{"Type":"t","data":1,"typ":1}`, malformed: true},
		{name: "trailing object", in: `{"type":"t","data":1}{"type":"t","data":2}`, malformed: true},
		{name: "trailing garbage", in: `{"type":"t","data":1} x`, malformed: true},
		{name: "trailing bracket", in: `{"type":"t","data":1}]`, malformed: true},
		{name: "invalid UTF-8 in a string", in: "{\"type\":\"t\",\"data\":\"\xff\"}", malformed: true},
		{name: "invalid UTF-8 outside strings", in: "{\"type\":\"t\",\"data\":1}\xc3", malformed: true},
		{name: "empty body", in: ``, malformed: true},
		{name: "whitespace only", in: " \n", malformed: true},
		{name: "truncated", in: `{"type":"t","data":`, malformed: true},
		{name: "array", in: `[{"type":"t","data":1}]`, malformed: true},
		{name: "type not a string", in: `{"type":1,"data":1}`, malformed: true},
		{name: "id not a string", in: `{"id":1,"type":"t","data":1}`, malformed: true},

		{name: "type missing", in: `{"data":1}`, invalid: []string{"type"}},
		{name: "type empty", in: `{"type":"","data":1}`, invalid: []string{"type"}},
		{name: "type empty token", in: `{"type":"a..b","data":1}`, invalid: []string{"type"}},
		{name: "type leading dot", in: `{"type":".a","data":1}`, invalid: []string{"type"}},
		{name: "type trailing dot", in: `{"type":"a.","data":1}`, invalid: []string{"type"}},
		{name: "type wildcard", in: `{"type":"a.*","data":1}`, invalid: []string{"type"}},
		{name: "type full wildcard", in: `{"type":"a.>","data":1}`, invalid: []string{"type"}},
		{name: "type with space", in: `{"type":"a b","data":1}`, invalid: []string{"type"}},
		{name: "type non-ASCII", in: `{"type":"caf\u00e9","data":1}`, invalid: []string{"type"}},
		{name: "type too long", in: `{"type":"` + strings.Repeat("a", 129) + `","data":1}`, invalid: []string{"type"}},
		{name: "data missing", in: `{"type":"t"}`, invalid: []string{"data"}},
		{name: "data null", in: `{"type":"t","data":null}`, invalid: []string{"data"}},
		{name: "data null with spaces", in: `{"type":"t","data": null }`, invalid: []string{"data"}},
		{name: "id too long", in: `{"id":"` + long + `x","type":"t","data":1}`, invalid: []string{"id"}},
		{name: "id with space", in: `{"id":"a b","type":"t","data":1}`, invalid: []string{"id"}},
		{name: "id with tab", in: `{"id":"a\tb","type":"t","data":1}`, invalid: []string{"id"}},
		{name: "id with newline", in: `{"id":"a\nb","type":"t","data":1}`, invalid: []string{"id"}},
		{name: "id non-ASCII", in: `{"id":"\u00e9","type":"t","data":1}`, invalid: []string{"id"}},
		{name: "endpoint_id with dot", in: `{"type":"t","data":1,"endpoint_id":"ep.1"}`, invalid: []string{"endpoint_id"}},
		{name: "endpoint_id with wildcard", in: `{"type":"t","data":1,"endpoint_id":"*"}`, invalid: []string{"endpoint_id"}},
		{name: "endpoint_id with space", in: `{"type":"t","data":1,"endpoint_id":"ep 1"}`, invalid: []string{"endpoint_id"}},
		{name: "endpoint_id too long", in: `{"type":"t","data":1,"endpoint_id":"` + strings.Repeat("e", 65) + `"}`, invalid: []string{"endpoint_id"}},
		{name: "every field reported at once", in: `{"id":"a b","type":"a..b","data":null,"endpoint_id":"x.y"}`,
			invalid: []string{"data", "endpoint_id", "id", "type"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := event.Parse([]byte(tc.in))
			switch {
			case tc.malformed:
				if !errors.Is(err, event.ErrMalformed) {
					t.Fatalf("Parse(%q) error = %v, want ErrMalformed", tc.in, err)
				}
				if got.Type != "" || got.ID != "" || got.Data != nil || got.EndpointID != "" {
					t.Fatalf("Parse(%q) returned a half-filled input %+v with ErrMalformed", tc.in, got)
				}
			case tc.invalid != nil:
				if errors.Is(err, event.ErrMalformed) {
					t.Fatalf("Parse(%q) error = %v, want a validation error", tc.in, err)
				}
				if f := fields(err); !slices.Equal(f, tc.invalid) {
					t.Fatalf("Parse(%q) invalid fields = %v (error %v), want %v", tc.in, f, err, tc.invalid)
				}
			default:
				if err != nil {
					t.Fatalf("Parse(%q) error = %v", tc.in, err)
				}
				if got.ID != tc.want.ID || got.Type != tc.want.Type || got.EndpointID != tc.want.EndpointID || !bytes.Equal(got.Data, tc.want.Data) {
					t.Fatalf("Parse(%q) = %+v (data %s), want %+v (data %s)", tc.in, got, got.Data, tc.want, tc.want.Data)
				}
			}
		})
	}
}

// A body that is JSON but not an object is refused one way or another.
func TestParseRejectsNonObjects(t *testing.T) {
	for _, in := range []string{`null`, `1`, `"x"`, `true`, `[]`, `{}`} {
		if got, err := event.Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%s) = %+v, nil; want an error", in, got)
		}
	}
}

// Decode refuses the shape but leaves field checks to Validate: the router
// relies on it to fill a missing type from the subject.
func TestDecodeDoesNotValidate(t *testing.T) {
	in, err := event.Decode([]byte(`{"data":{"x":1}}`))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if in.Type != "" || string(in.Data) != `{"x":1}` {
		t.Fatalf("Decode = %+v", in)
	}
	if f := fields(in.Validate()); !slices.Equal(f, []string{"type"}) {
		t.Fatalf("Validate fields = %v, want [type]", f)
	}
	if _, err := event.Decode([]byte(`{"data":1,"bogus":2}`)); !errors.Is(err, event.ErrMalformed) {
		t.Fatalf("Decode with unknown field: %v, want ErrMalformed", err)
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{"a", "evt_01HZ", strings.Repeat("~", event.MaxIDLength), "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"} {
		if err := event.ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", " ", "a b", "a\x00", "a\x7f", "\u00e9", strings.Repeat("a", event.MaxIDLength+1)} {
		if err := event.ValidateID(id); err == nil {
			t.Errorf("ValidateID(%q) = nil, want an error", id)
		}
	}
}

func TestIsToken(t *testing.T) {
	for _, s := range []string{"a", "tn_01HZ", "A-b_9", strings.Repeat("x", 64)} {
		if !event.IsToken(s) {
			t.Errorf("IsToken(%q) = false", s)
		}
	}
	for _, s := range []string{"", "a.b", "*", ">", "a b", "a/b", "\u00e9", strings.Repeat("x", 65)} {
		if event.IsToken(s) {
			t.Errorf("IsToken(%q) = true", s)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for range 1000 {
		id := event.NewID("evt")
		// Listings are ordered by id as creation order, so ids made one
		// after the other sort one after the other, within a millisecond too.
		if id <= prev {
			t.Fatalf("NewID %q sorts before or equal to the previous id %q", id, prev)
		}
		prev = id
		if !strings.HasPrefix(id, "evt_") || !event.IsToken(id) || event.ValidateID(id) != nil {
			t.Fatalf("NewID = %q: want evt_ prefix, a token and a valid id", id)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
	}
}

func TestJobID(t *testing.T) {
	a := event.JobID("tn_1", "evt_1", "ep_1")
	if b := event.JobID("tn_1", "evt_1", "ep_1"); a != b {
		t.Fatalf("JobID not stable: %q then %q", a, b)
	}
	// The id is a Nats-Msg-Id and shows in logs: a token of fixed form.
	if !strings.HasPrefix(a, "job_") || len(a) != len("job_")+26 || !event.IsToken(a) {
		t.Fatalf("JobID = %q, want job_ + 26 token characters", a)
	}
	// Each component matters, and moving bytes between components (which a
	// plain concatenation would not notice) gives another id.
	triples := [][3]string{
		{"tn_1", "evt_1", "ep_1"},
		{"tn_2", "evt_1", "ep_1"},
		{"tn_1", "evt_2", "ep_1"},
		{"tn_1", "evt_1", "ep_2"},
		{"tn_1e", "vt_1", "ep_1"},
		{"tn_", "1evt_1", "ep_1"},
		{"tn_1", "evt_1e", "p_1"},
		{"tn_1", "evt_", "1ep_1"},
		{"tn_1evt_1", "", "ep_1"},
		{"", "tn_1evt_1", "ep_1"},
		{"tn_1", "", "evt_1ep_1"},
		{"ep_1", "evt_1", "tn_1"}, // components swapped
		{"evt_1", "tn_1", "ep_1"},
	}
	ids := map[string][3]string{}
	for _, tr := range triples {
		id := event.JobID(tr[0], tr[1], tr[2])
		if prev, dup := ids[id]; dup {
			t.Fatalf("JobID%q = JobID%q = %q", tr, prev, id)
		}
		ids[id] = tr
	}
}

func TestDerivedID(t *testing.T) {
	const ts = int64(1_700_000_000_123_456_789)
	a := event.DerivedID("EVENTS", 42, ts)
	if b := event.DerivedID("EVENTS", 42, ts); a != b {
		t.Fatalf("DerivedID not stable: %q then %q", a, b)
	}
	// The id travels as webhook-id: it must be a valid producer-style id.
	if !strings.HasPrefix(a, "evt_") || event.ValidateID(a) != nil || !event.IsToken(a) {
		t.Fatalf("DerivedID = %q, want an evt_ token", a)
	}
	others := map[string]string{
		"other stream":     event.DerivedID("EVENTS2", 42, ts),
		"other sequence":   event.DerivedID("EVENTS", 43, ts),
		"other time":       event.DerivedID("EVENTS", 42, ts+1),
		"digits shifted 1": event.DerivedID("EVENTS4", 2, ts),
		"digits shifted 2": event.DerivedID("EVENTS", 421, ts/10),
		"small values":     event.DerivedID("EVENTS", 4, 2),
	}
	seen := map[string]string{a: "base"}
	for name, id := range others {
		if prev, dup := seen[id]; dup {
			t.Fatalf("DerivedID for %s equals the one for %s: %q", name, prev, id)
		}
		seen[id] = name
	}
}
