package sender_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/sender"
)

var sched = retry.Schedule{5 * time.Second, 5 * time.Minute, 30 * time.Minute}

func status(code int) deliver.Outcome {
	o := deliver.Outcome{Status: code}
	switch {
	case code >= 200 && code <= 299:
		o.Class = deliver.Success
	case code >= 300 && code <= 399:
		o.Class = deliver.Redirect
	case code == 410:
		o.Class = deliver.Gone
	case code == 429:
		o.Class = deliver.RateLimited
	case code >= 400 && code <= 499:
		o.Class = deliver.ClientError
	default:
		o.Class = deliver.ServerError
	}
	return o
}

func TestDecideTerminal(t *testing.T) {
	tests := []struct {
		name      string
		o         deliver.Outcome
		attempt   int
		max       int
		action    sender.Action
		disable   bool
		reasonHas []string
	}{
		{"200", status(200), 1, 5, sender.Ack, false, nil},
		{"204 on last attempt", status(204), 5, 5, sender.Ack, false, nil},
		{"299", status(299), 3, 5, sender.Ack, false, nil},
		{"410 first attempt", status(410), 1, 5, sender.DeadLetter, true, []string{"410"}},
		{"410 last attempt", status(410), 5, 5, sender.DeadLetter, true, []string{"410"}},
		{"500 last attempt", status(500), 5, 5, sender.DeadLetter, false, []string{"5 attempts", "500"}},
		{"timeout last attempt", deliver.Outcome{Class: deliver.Timeout, Err: "deadline exceeded"}, 3, 3, sender.DeadLetter, false, []string{"3 attempts", "timeout", "deadline exceeded"}},
		{"429 last attempt", deliver.Outcome{Status: 429, Class: deliver.RateLimited, RetryAfter: time.Hour}, 1, 1, sender.DeadLetter, false, []string{"1 attempts", "429"}},
		{"beyond max", status(503), 7, 5, sender.DeadLetter, false, []string{"7 attempts"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := sender.Decide(tc.o, tc.attempt, tc.max, sched, rand.Float64, time.Hour)
			if d.Action != tc.action || d.Disable != tc.disable {
				t.Fatalf("Decide = %+v, want action %v disable %v", d, tc.action, tc.disable)
			}
			if tc.action != sender.Ack && d.Reason == "" {
				t.Fatal("no reason given")
			}
			for _, s := range tc.reasonHas {
				if !strings.Contains(d.Reason, s) {
					t.Fatalf("reason %q does not mention %q", d.Reason, s)
				}
			}
			if tc.action != sender.Retry && d.Delay != 0 {
				t.Fatalf("delay %v on a %v", d.Delay, d.Action)
			}
		})
	}
}

func TestDecideRetryFollowsSchedule(t *testing.T) {
	outcomes := map[string]deliver.Outcome{
		"500":                     status(500),
		"502":                     status(502),
		"timeout":                 {Class: deliver.Timeout, Err: "timeout"},
		"connection":              {Class: deliver.Connection, Err: "connection refused"},
		"dns":                     {Class: deliver.DNS, Err: "no such host"},
		"301":                     status(301),
		"404":                     status(404),
		"400":                     status(400),
		"401":                     status(401),
		"429 without Retry-After": status(429),
		"503 without Retry-After": status(503),
	}
	src := rand.New(rand.NewPCG(1, 2))
	for name, o := range outcomes {
		for attempt := 1; attempt <= 5; attempt++ { // 4 and 5 reuse the last entry
			want := sched[min(attempt, len(sched))-1]
			lo, hi := time.Duration(float64(want)*0.8), time.Duration(float64(want)*1.2)
			var minSeen, maxSeen time.Duration
			for i := range 200 {
				d := sender.Decide(o, attempt, 10, sched, src.Float64, time.Hour)
				if d.Action != sender.Retry || d.Disable {
					t.Fatalf("%s attempt %d: Decide = %+v, want a retry", name, attempt, d)
				}
				if d.Delay < lo || d.Delay > hi {
					t.Fatalf("%s attempt %d: delay %v outside %v ±20%% [%v, %v]", name, attempt, d.Delay, want, lo, hi)
				}
				if d.Reason == "" {
					t.Fatalf("%s: retry without a reason", name)
				}
				if i == 0 || d.Delay < minSeen {
					minSeen = d.Delay
				}
				maxSeen = max(maxSeen, d.Delay)
			}
			// Jitter is applied, not a fixed delay.
			if maxSeen-minSeen < want/5 {
				t.Fatalf("%s attempt %d: delays spread only over [%v, %v]", name, attempt, minSeen, maxSeen)
			}
		}
	}
	// The extremes of the random source map to the bounds of the band.
	if d := sender.Decide(status(500), 1, 5, sched, func() float64 { return 0 }, time.Hour); d.Delay != 4*time.Second {
		t.Fatalf("rnd=0 delay %v, want 4s", d.Delay)
	}
	if d := sender.Decide(status(500), 2, 5, sched, func() float64 { return 0.5 }, time.Hour); d.Delay != 5*time.Minute {
		t.Fatalf("rnd=0.5 delay %v, want 5m", d.Delay)
	}
}

func TestDecideRetryAfter(t *testing.T) {
	noJitter := func() float64 { return 0.5 }
	tests := []struct {
		name    string
		status  int
		after   time.Duration
		attempt int
		want    time.Duration // 0: dead-lettered
	}{
		{"429 asks less than scheduled", 429, time.Second, 1, 5 * time.Second},
		{"429 asks more than scheduled", 429, 7 * time.Second, 1, 7 * time.Second},
		{"429 asks far more, within the limit", 429, 50 * time.Minute, 1, 50 * time.Minute},
		{"429 asks exactly the limit", 429, time.Hour, 1, time.Hour},
		{"429 asks beyond the limit", 429, time.Hour + time.Second, 1, 0},
		{"503 asks less", 503, time.Second, 2, 5 * time.Minute},
		{"503 asks more", 503, 8 * time.Minute, 2, 8 * time.Minute},
		{"503 asks a day", 503, 24 * time.Hour, 2, 0},
		{"500 Retry-After ignored", 500, 24 * time.Hour, 1, 5 * time.Second},
		{"502 Retry-After ignored", 502, time.Hour, 1, 5 * time.Second},
		{"404 Retry-After ignored", 404, time.Hour, 1, 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := status(tc.status)
			o.RetryAfter = tc.after
			d := sender.Decide(o, tc.attempt, 5, sched, noJitter, time.Hour)
			if tc.want == 0 {
				if d.Action != sender.DeadLetter || !strings.Contains(d.Reason, "HERALD_RETRY_AFTER_MAX") {
					t.Fatalf("Decide = %+v, want a dead letter naming HERALD_RETRY_AFTER_MAX", d)
				}
				return
			}
			if d.Action != sender.Retry || d.Delay != tc.want {
				t.Fatalf("Decide = %+v, want retry after %v", d, tc.want)
			}
		})
	}
	// With jitter: never sooner than asked, never sooner than the jittered
	// schedule.
	src := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		o := deliver.Outcome{Status: 429, Class: deliver.RateLimited, RetryAfter: 30 * time.Second}
		if d := sender.Decide(o, 1, 5, sched, src.Float64, time.Hour); d.Delay != 30*time.Second {
			t.Fatalf("429 with Retry-After 30s: delay %v, want exactly what was asked", d.Delay)
		}
		o.RetryAfter = time.Millisecond
		if d := sender.Decide(o, 1, 5, sched, src.Float64, time.Hour); d.Delay < 4*time.Second || d.Delay > 6*time.Second {
			t.Fatalf("429 with a short Retry-After: delay %v, want the scheduled 5s ±20%%", d.Delay)
		}
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[sender.Action]string{sender.Ack: "ack", sender.Retry: "retry", sender.DeadLetter: "dead_letter"} {
		if a.String() != want {
			t.Errorf("%d.String() = %q, want %q", a, a.String(), want)
		}
	}
}
