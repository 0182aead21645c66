package service_test

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/heraldhq/herald/pkg/service"
)

// msTime is a time in RFC 3339 with milliseconds, as every record has.
var msTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$`)

// newLogger is service.NewLogger, with zerolog's time format (which it
// sets for the process) given back after the test.
func newLogger(t *testing.T, cfg service.Config, w io.Writer) zerolog.Logger {
	t.Helper()
	old := zerolog.TimeFieldFormat
	t.Cleanup(func() { zerolog.TimeFieldFormat = old })
	return service.NewLogger(cfg, w, "herald")
}

// A record is one JSON object per line, away from a terminal (the default
// "auto" and "json"), with the level, the service, the message and a time
// in RFC 3339 with milliseconds, time fields included.
func TestLogRecord(t *testing.T) {
	since := time.Date(2026, 12, 4, 7, 5, 9, 42_123_456, time.UTC)
	for _, format := range []string{"", "auto", "json"} {
		var buf bytes.Buffer
		log := newLogger(t, service.Config{LogLevel: "info", LogFormat: format}, &buf)
		log.Debug().Msg("below the level")
		before := time.Now().Truncate(time.Millisecond)
		log.Info().Str("tenant_id", "ten_1").Time("since", since).Msg("hello")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 1 {
			t.Fatalf("format %q: %d lines, want 1:\n%s", format, len(lines), buf.String())
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
			t.Fatalf("format %q: not a JSON record: %v\n%s", format, err, lines[0])
		}
		for k, want := range map[string]string{"level": "info", "service": "herald", "message": "hello",
			"tenant_id": "ten_1", "since": "2026-12-04T07:05:09.042Z"} {
			if rec[k] != want {
				t.Errorf("format %q: %s = %v, want %q", format, k, rec[k], want)
			}
		}
		ts, _ := rec["time"].(string)
		at, err := time.Parse(time.RFC3339, ts)
		if !msTime.MatchString(ts) || err != nil || at.Before(before) || time.Since(at) > time.Minute {
			t.Errorf("format %q: time %q (%v), want RFC 3339 with milliseconds, now", format, ts, err)
		}
	}
}

// The console format, for people, writes the time of day with milliseconds
// and the fields as name=value.
func TestLogConsole(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(t, service.Config{LogLevel: "debug", LogFormat: "console"}, &buf)
	log.Debug().Str("event_id", "evt_1").Msg("hello")
	out := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(buf.String(), "") // no colours
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} DBG hello .*event_id=evt_1`).MatchString(out) {
		t.Errorf("console record %q", out)
	}
}

// bareID is a log field naming an id without saying so: tenant beside
// event_id. Every id is <what>_id.
var bareID = map[string]bool{"tenant": true, "endpoint": true, "event": true, "job": true, "replay": true,
	"resend": true, "key": true, "dead_letter": true}

// logField is the name of a field added to a zerolog event or context
// (".Str(" after a call, never flag.Int and the like).
var logField = regexp.MustCompile(`\)\s*\.(?:Str|Strs|Stringer|Int|Int64|Uint32|Uint64|Bool|Dur|Time|Float64|Interface|Any)\("([^"]*)"`)

// Every log field of Herald's code is snake_case, and an id is named
// <what>_id: one scheme, so that a query for tenant_id finds every record
// of a tenant.
func TestLogFieldNames(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	seen := 0
	for _, dir := range []string{"../../pkg", "../../services"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range logField.FindAllStringSubmatch(string(b), -1) {
				seen++
				if name := m[1]; !snake.MatchString(name) || bareID[name] {
					t.Errorf("%s: log field %q: want snake_case, an id as <what>_id", path, name)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if seen < 50 {
		t.Errorf("only %d log fields found: is the pattern still right?", seen)
	}
}
