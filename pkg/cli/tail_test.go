package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
)

// herald tail prints each attempt as it happens, a line each or JSON, and
// only those its filters ask for.
func TestTail(t *testing.T) {
	f := newFixture(t, true)
	var ep endpointJSON
	f.okJSON(&ep, "endpoints", "create", "--name", "tail", "--url", f.hook.URL, "--events", "post.*", "--max-attempts", "1")
	n := 0
	send := func() string {
		n++
		id := fmt.Sprintf("tail-%d", n)
		f.ok("events", "send", "--type", "post.published", "--id", id, "--data", `{}`)
		return id
	}
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			out := &testenv.Buffer{}
			ctx, cancel := context.WithCancel(f.ctx)
			done := make(chan int, 1)
			go func() {
				args := append([]string{"tail", "--endpoint", ep.ID, "--status", "succeeded", "-o", format}, f.conn()...)
				done <- Run(ctx, args, Stdio{In: strings.NewReader(""), Out: out, Err: io.Discard}, func(string) string { return "" })
			}()
			// The stream shows what happens after it opened: send until
			// one shows, then time one more.
			var last time.Time
			testenv.Eventually(t, 15*time.Second, func() bool {
				if time.Since(last) > 300*time.Millisecond {
					send()
					last = time.Now()
				}
				return strings.Contains(out.String(), "tail-")
			}, "tail printed nothing: %q", out)
			id := send()
			sent := time.Now()
			testenv.Eventually(t, 5*time.Second, func() bool { return strings.Contains(out.String(), id) }, "tail did not show %s: %q", id, out)
			t.Logf("%s: attempt shown %v after the event was accepted", format, time.Since(sent).Round(time.Millisecond))
			cancel()
			if code := <-done; code != 0 {
				t.Fatalf("tail exited %d after Ctrl-C", code)
			}
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if format == "json" {
					var a attempt
					if err := json.Unmarshal([]byte(line), &a); err != nil || a.EndpointID != ep.ID || a.Status != "succeeded" {
						t.Fatalf("json line %q: %+v %v", line, a, err)
					}
					continue
				}
				if !strings.Contains(line, ep.ID) || !strings.Contains(line, "200") || len([]rune(line)) > 80 {
					t.Fatalf("table line %q: want the endpoint and 200 within 80 columns", line)
				}
			}
		})
	}
	// A filter the API refuses is a failure with its reason.
	code, _, errs := f.run(nil, append([]string{"tail", "--status", "sideways"}, f.conn()...)...)
	if code != 1 || !strings.Contains(errs, "status") {
		t.Fatalf("tail --status sideways: exit %d, %s", code, errs)
	}
}
