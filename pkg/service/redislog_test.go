package service

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
)

// go-redis's own notices are records of the process logger, not plain
// text on stderr.
func TestRedisNoticesAreRecords(t *testing.T) {
	var b bytes.Buffer
	redisLog{zerolog.New(&b)}.Printf(context.Background(), "redis: %s:%d: connection pool: failed to dial", "pool.go", 770)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON record: %q", b.String())
	}
	if rec["level"] != "warn" || rec["message"] != "redis: pool.go:770: connection pool: failed to dial" {
		t.Fatalf("record %v", rec)
	}
}
