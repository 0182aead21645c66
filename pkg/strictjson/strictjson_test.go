package strictjson

import "testing"

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
