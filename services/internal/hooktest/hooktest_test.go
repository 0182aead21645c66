package hooktest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records Errorf and Fatalf instead of
// failing; Fatalf panics with the recorder, as t.Fatalf ends the goroutine.
type recorder struct {
	testing.TB
	msgs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(r)
}

func TestRejects(t *testing.T) {
	var rej Rejects
	r := &recorder{}
	rej.Report(r, "receiver")
	if len(r.msgs) != 0 {
		t.Fatalf("no rejects reported %q", r.msgs)
	}
	rej.Add(`webhook-id "a": bad signature`)
	rej.Add(`webhook-id "b": bad signature`)
	rej.Report(r, "receiver")
	want := `receiver: 2 request(s) failed verification; first: webhook-id "a": bad signature`
	if len(r.msgs) != 1 || r.msgs[0] != want {
		t.Fatalf("reported %q, want [%q]", r.msgs, want)
	}
}

func TestNewWebhook(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh := NewWebhook(t, "hook", secret)
	body := []byte(`{"type":"x"}`)
	now := time.Now()
	sig, err := wh.Sign("msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	h.Set("webhook-signature", sig)
	if err := wh.Verify(body, h); err != nil {
		t.Fatalf("Verify of its own signature: %v", err)
	}

	r := &recorder{}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		NewWebhook(r, "hook", "whsec_not base64!")
	}()
	if len(r.msgs) != 1 || !strings.HasPrefix(r.msgs[0], `hook: NewWebhook("whsec_not base64!")`) {
		t.Fatalf("bad secret reported %q", r.msgs)
	}
}

func TestStall(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if !Stall(done, 0) {
		t.Error("Stall with no delay: false on an ended context, want true at once")
	}
	if Stall(done, time.Minute) {
		t.Error("Stall on an ended context: true, want false")
	}
	start := time.Now()
	if !Stall(context.Background(), 20*time.Millisecond) {
		t.Error("Stall 20ms: false, want true")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("Stall 20ms returned after %v", d)
	}
}
