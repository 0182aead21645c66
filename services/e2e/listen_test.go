package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/cli"
)

// herald listen --forward-to, against the all-in-one: a local receiver,
// which verifies every request with the official Standard Webhooks
// library, gets the tenant's matching events through the CLI's stream and
// nothing else; its answers are the attempts' outcomes, a 500 included;
// when the CLI stops, its endpoint is gone.
func TestListenForwardTo(t *testing.T) {
	d := StartInProcess(t)
	tn := d.Tenant(t)
	rcv := NewReceiver(t)
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			out, errs := &testenv.Buffer{}, &testenv.Buffer{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan int, 1)
			go func() {
				done <- cli.Run(ctx, []string{"listen", "--forward-to", rcv.URL(), "--events", "post.*", "--max-attempts", "2",
					"--api-url", d.API.Base, "--api-key", tn.APIKey, "-o", format},
					cli.Stdio{In: strings.NewReader(""), Out: out, Err: errs}, func(string) string { return "" })
			}()
			var secret, epID string
			testenv.Eventually(t, 15*time.Second, func() bool {
				s := errs.String()
				if m := regexp.MustCompile(`Signing secret: (whsec_\S+)`).FindStringSubmatch(s); m != nil {
					secret = m[1]
				}
				if m := regexp.MustCompile(`\(endpoint (ep_[^)\s]+)\)`).FindStringSubmatch(s); m != nil {
					epID = m[1]
				}
				return secret != "" && epID != "" && strings.Contains(s, "Ready.")
			}, "herald listen did not get ready: %q", errs)
			rcv.SetSecret(secret)

			// Ready means listening: the first event arrives at its first attempt.
			ok, skipped, failing := "lok-"+format[:1], "lskip-"+format[:1], "lfail-"+format[:1]
			d.API.PostEvent(t, tn.APIKey, ok, "post.published", `{"title":"hello"}`)
			d.API.PostEvent(t, tn.APIKey, skipped, "member.added", `{}`)
			rcv.WaitDelivered(t, 15*time.Second, ok)
			// A 500 from the local server is the attempt's outcome: a failed
			// attempt, retried on the endpoint's schedule.
			rcv.FailFirst(1)
			d.API.PostEvent(t, tn.APIKey, failing, "post.updated", `{}`)
			rcv.WaitDelivered(t, 15*time.Second, failing)
			rcv.FailFirst(0)
			if got := rcv.Attempts(ok); !slices.Equal(got, []int{1}) {
				t.Errorf("%s: attempts %v, want [1]", ok, got)
			}
			if got := rcv.Attempts(failing); !slices.Equal(got, []int{1, 2}) {
				t.Errorf("%s: attempts %v, want [1 2]", failing, got)
			}
			var page attemptList
			testenv.Eventually(t, 10*time.Second, func() bool {
				d.API.Must(t, "GET", "/v1/endpoints/"+epID+"/attempts?status=failed", tn.APIKey, nil, http.StatusOK, &page)
				return len(page.Data) > 0
			}, "no failed attempt in the history of %s", epID)
			if a := page.Data[0]; len(page.Data) != 1 || a.EventID != failing || a.Number != 1 || a.ResponseStatus != http.StatusInternalServerError {
				t.Errorf("failed attempts %+v: want %s attempt 1 answered 500", page.Data, failing)
			}
			// The CLI printed each attempt with the local server's answer, one
			// line each. It prints an attempt once it has posted the answer
			// back to Herald, so lines of attempts in flight together may come
			// in either order: each line is matched to the attempt it names.
			testenv.Eventually(t, 5*time.Second, func() bool { return strings.Count(out.String(), "\n") >= 3 }, "output %q", out)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 3 {
				t.Fatalf("printed %d lines, want 3 (one per attempt): %q", len(lines), out)
			}
			type printed struct {
				id      string
				attempt string
				status  int
			}
			want := []printed{{ok, "1", 200}, {failing, "1", 500}, {failing, "2", 200}}
			var got []printed
			for _, line := range lines {
				var p printed
				if format == "json" {
					var f struct {
						EventID   string `json:"event_id"`
						EventType string `json:"event_type"`
						Attempt   string `json:"attempt"`
						Status    int    `json:"status"`
					}
					if err := json.Unmarshal([]byte(line), &f); err != nil || f.EventType == "" {
						t.Errorf("line %q: not a JSON delivery with its event type (%v)", line, err)
					}
					p = printed{f.EventID, f.Attempt, f.Status}
				} else {
					if len([]rune(line)) > 80 {
						t.Errorf("line %q: wider than 80 columns", line)
					}
					if m := regexp.MustCompile(`(\S+)\s+#(\d+)\s+→ (\d{3}) `).FindStringSubmatch(line); m != nil {
						p.id, p.attempt = m[1], m[2]
						p.status, _ = strconv.Atoi(m[3])
					}
				}
				got = append(got, p)
			}
			cmp := func(a, b printed) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
			slices.SortFunc(got, cmp)
			slices.SortFunc(want, cmp)
			if !slices.Equal(got, want) {
				t.Errorf("printed attempts %+v, want %+v: %q", got, want, out)
			}
			// Ctrl-C: the command ends well and its endpoint is gone.
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Fatalf("herald listen exited %d after Ctrl-C: %s", code, errs)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("herald listen did not stop within 15s of Ctrl-C")
			}
			d.API.Must(t, "GET", "/v1/endpoints/"+epID, tn.APIKey, nil, http.StatusNotFound, nil)
			if n := rcv.Delivered(skipped); n != 0 {
				t.Errorf("%s (member.added) was forwarded %d times; the listen endpoint wants post.*", skipped, n)
			}
		})
	}
}

// attemptList is GET /v1/endpoints/{id}/attempts as this test reads it.
type attemptList struct {
	Data []struct {
		EventID        string `json:"event_id"`
		Number         int    `json:"attempt"`
		Status         string `json:"status"`
		ResponseStatus int    `json:"response_status"`
	} `json:"data"`
}
