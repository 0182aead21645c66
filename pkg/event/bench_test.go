package event

import (
	"strings"
	"testing"
)

// BenchmarkDecode1KiB decodes a 1 KiB event, the bench's size: what
// ingest and the router pay for every producer's event.
func BenchmarkDecode1KiB(b *testing.B) {
	body := []byte(`{"type":"post.published","id":"evt-123456","data":{"title":"` + strings.Repeat("x", 900) + `","n":[1,2,3],"o":{"a":"b"}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}
