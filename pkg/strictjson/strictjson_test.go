package strictjson

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type body struct {
		Name string `json:"name"`
	}
	for _, c := range []struct {
		in string
		ok bool
	}{
		{`{"name":"x"}`, true},
		{` {"name":"x"} ` + "\n", true},
		{``, false},
		{`{"name":1}`, false},
		{`{"name":"x","other":1}`, false},
		{`{"name":"x"}}`, false},
		{`{"name":"x"}]`, false},
		{`{"name":"x"} {"name":"y"}`, false},
		{`{"name":"x"} garbage`, false},
		{"{\"name\":\"\xff\"}", false},
		{`{"name":`, false},
	} {
		var b body
		if err := Decode([]byte(c.in), &b); (err == nil) != c.ok {
			t.Errorf("Decode(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
	}
}

func TestObject(t *testing.T) {
	for _, c := range []struct {
		in, err string // err: a part of the error, "" for none
		name    string
		data    string
	}{
		{in: `{"name":"x","data":{ "a" : 1 }}`, name: "x", data: `{ "a" : 1 }`},
		{in: " \n{\"name\":\"x\"}\t", name: "x"},
		{in: `{"name":null}`},
		{in: `{"name":"x","name":"y"}`, err: `duplicate key "name"`},
		{in: `{"name":"x","data":1,"n\u0061me":"y"}`, err: `duplicate key "name"`},
		// data is passed on as sent: what is inside is the producer's.
		{in: `{"name":"x","data":{"a":1,"a":2}}`, name: "x", data: `{"a":1,"a":2}`},
		{in: ``, err: "empty"},
		{in: ` `, err: "empty"},
		{in: `[{"name":"x"}]`, err: "a JSON object is expected"},
		{in: `null`, err: "a JSON object is expected"},
		{in: `{"name":1}`, err: `field "name" must be a JSON string`},
		{in: `{"name":"x","other":1}`, err: `unknown field "other"`},
		{in: `{"Name":"x"}`, err: `unknown field "Name"`},
		{in: `{"name":"x"}}`, err: "invalid JSON"},
		{in: `{"name":"x"}]`, err: "invalid JSON"},
		{in: `{"name":"x"} {"name":"y"}`, err: "invalid JSON"},
		{in: `{"name":"x"} garbage`, err: "invalid JSON"},
		{in: "{\"name\":\"\xff\"}", err: "UTF-8"},
		{in: `{"name":`, err: "invalid JSON"},
	} {
		var name string
		var data json.RawMessage
		err := Object([]byte(c.in), map[string]any{"name": &name, "data": &data})
		switch {
		case c.err == "" && err != nil:
			t.Errorf("Object(%q) = %v", c.in, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Object(%q) = %v, want an error with %q", c.in, err, c.err)
		case c.err == "" && (name != c.name || string(data) != c.data):
			t.Errorf("Object(%q): name %q data %s, want %q %s", c.in, name, data, c.name, c.data)
		}
	}
}

// A raw value is the body's own bytes, not a copy of them.
func TestObjectRawIsInPlace(t *testing.T) {
	b := []byte(`{"data":[1,2,3]}`)
	var data json.RawMessage
	if err := Object(b, map[string]any{"data": &data}); err != nil {
		t.Fatal(err)
	}
	if string(data) != `[1,2,3]` || &data[0] != &b[8] {
		t.Fatalf("data %s is not b[8:15] in place", data)
	}
}

// A key twice in one object is refused, at any depth, and named with
// where it is; the same key in different objects is not a duplicate.
func TestDecodeDuplicateKeys(t *testing.T) {
	type body struct {
		Name    string            `json:"name"`
		Headers map[string]string `json:"headers"`
		Items   []map[string]any  `json:"items"`
	}
	for _, c := range []struct {
		in, err string // err: the whole error, "" for none
	}{
		{`{"name":"x","headers":{"a":"1","b":"2"},"items":[{"a":1},{"a":2}]}`, ""},
		{`{"name":"x","headers":{"name":"x"}}`, ""},
		{`{"name":"a\"b","headers":{"a\"b":"1"}}`, ""},
		{`{"name":"x","name":"y"}`, `duplicate key "name" (each key may appear once)`},
		{`{"name":"x","n\u0061me":"y"}`, `duplicate key "name" (each key may appear once)`},
		{`{"headers":{"X-A":"1","X-A":"2"}}`, `duplicate key "X-A" in headers (each key may appear once)`},
		{`{"items":[{"a":1},{"b":{"c":1,"c":2}}]}`, `duplicate key "c" in items[1].b (each key may appear once)`},
		{`{"items":[{"a":"}","a":"{"}]}`, `duplicate key "a" in items[0] (each key may appear once)`},
	} {
		var b body
		err := Decode([]byte(c.in), &b)
		if got := fmt.Sprint(err); (c.err == "" && err != nil) || (c.err != "" && got != c.err) {
			t.Errorf("Decode(%s) = %v, want %q", c.in, err, c.err)
		}
	}
}

func TestObjectDuplicateKeysInDecodedValues(t *testing.T) {
	var meta map[string]any
	err := Object([]byte(`{"meta":{"a":{"b":1,"b":2}}}`), map[string]any{"meta": &meta})
	if want := `duplicate key "b" in meta.a (each key may appear once)`; fmt.Sprint(err) != want {
		t.Fatalf("Object = %v, want %q", err, want)
	}
}
