package retry

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestDelayIndexing(t *testing.T) {
	s := Schedule{1 * time.Second, 2 * time.Second, 3 * time.Second}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{-1, 1 * time.Second},
		{0, 1 * time.Second},
		{1, 1 * time.Second},
		{2, 2 * time.Second},
		{3, 3 * time.Second},
		{4, 3 * time.Second},
		{1000, 3 * time.Second},
		{math.MaxInt, 3 * time.Second},
	}
	for _, tt := range tests {
		if got := s.Delay(tt.attempt, nil); got != tt.want {
			t.Errorf("Delay(%d, nil) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
	if got := Schedule(nil).Delay(1, nil); got != 0 {
		t.Errorf("empty schedule: Delay(1) = %v, want 0", got)
	}
	if got := Default.Delay(1, nil); got != 5*time.Second {
		t.Errorf("Default.Delay(1) = %v, want 5s", got)
	}
	if got := Default.Delay(len(Default)+5, nil); got != 10*time.Hour {
		t.Errorf("Default.Delay(past end) = %v, want 10h", got)
	}
}

func TestDelayJitterBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range []time.Duration{time.Millisecond, 5 * time.Second, 10 * time.Hour} {
		s := Schedule{d}
		lo, hi := d-d/5, d+d/5
		const draws = 10000
		var below, above int // draws in the lower and upper 10 % bands
		minGot, maxGot := time.Duration(math.MaxInt64), time.Duration(0)
		for range draws {
			got := s.Delay(1, r.Float64)
			if got < lo || got > hi {
				t.Fatalf("Delay(%v) = %v, outside [%v, %v]", d, got, lo, hi)
			}
			minGot, maxGot = min(minGot, got), max(maxGot, got)
			if got < d-d/10 {
				below++
			}
			if got > d+d/10 {
				above++
			}
		}
		// Uniform over ±20 %: a quarter of the draws should land in each
		// outer band. Accept a wide margin; a broken jitter gives ~0.
		if below < draws/5 || above < draws/5 {
			t.Errorf("Delay(%v): %d draws below -10 %%, %d above +10 %% of %d; jitter not spread", d, below, above, draws)
		}
		if minGot > d-d*19/100 || maxGot < d+d*19/100 {
			t.Errorf("Delay(%v): draws span [%v, %v], want close to [%v, %v]", d, minGot, maxGot, lo, hi)
		}
	}
}

func TestDelayJitterExtremes(t *testing.T) {
	d := 10 * time.Second
	s := Schedule{d}
	if got := s.Delay(1, func() float64 { return 0 }); got < 8*time.Second || got > 8*time.Second+time.Nanosecond {
		t.Errorf("rnd=0: got %v, want 8s", got)
	}
	if got := s.Delay(1, func() float64 { return 0.5 }); got != d {
		t.Errorf("rnd=0.5: got %v, want %v", got, d)
	}
	below := math.Nextafter(1, 0)
	if got := s.Delay(1, func() float64 { return below }); got > 12*time.Second || got < 12*time.Second-time.Microsecond {
		t.Errorf("rnd→1: got %v, want just under 12s", got)
	}
	huge := Schedule{time.Duration(math.MaxInt64)}
	if got := huge.Delay(1, func() float64 { return below }); got != time.Duration(math.MaxInt64) {
		t.Errorf("overflowing jitter: got %v, want MaxInt64", got)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Schedule
	}{
		{"100ms,1s,5s", Schedule{100 * time.Millisecond, time.Second, 5 * time.Second}},
		{" 100ms , 1s ,5s ", Schedule{100 * time.Millisecond, time.Second, 5 * time.Second}},
		{"1h30m", Schedule{90 * time.Minute}},
		{"5s,5m,30m,2h,5h,10h,10h", Default},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got.String() != tt.want.String() {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"", "   ", ",", "1s,", ",1s", "1s,,2s", "1s;2s", "0s", "1s,0", "-1s", "1", "abc", "1s 2s", "9999999999h",
	} {
		s, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want error", in, s)
			continue
		}
		if !errors.Is(err, ErrInvalidSchedule) {
			t.Errorf("Parse(%q) error %v does not wrap ErrInvalidSchedule", in, err)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"99999999999999999999999", time.Duration(math.MaxInt64), true},
		{"Sat, 01 Mar 2025 12:01:30 GMT", 90 * time.Second, true},    // IMF-fixdate
		{"Saturday, 01-Mar-25 12:00:10 GMT", 10 * time.Second, true}, // RFC 850
		{"Sat Mar  1 12:00:05 2025", 5 * time.Second, true},          // asctime
		{"Sat, 01 Mar 2025 12:00:00 GMT", 0, true},                   // exactly now
		{"Sat, 01 Mar 2025 11:59:59 GMT", 0, false},                  // past
		{"Mon, 01 Jan 2001 00:00:00 GMT", 0, false},                  // long past
		{"Sat, 01 Mar 2025 12:01:30 +0000", 0, false},                // not GMT
		{"", 0, false},
		{"  ", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"0x10", 0, false},
		{"tomorrow", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestParseRetryAfterSubSecondNow(t *testing.T) {
	// HTTP-dates have whole seconds; a real clock does not.
	now := time.Date(2025, 3, 1, 12, 0, 0, 250*int(time.Millisecond), time.UTC)
	got, ok := ParseRetryAfter("Sat, 01 Mar 2025 12:00:10 GMT", now)
	if !ok || got != 9750*time.Millisecond {
		t.Errorf("got %v, %v; want 9.75s, true", got, ok)
	}
}

func TestHonour(t *testing.T) {
	const s, limit = time.Minute, time.Hour
	tests := []struct {
		name      string
		requested time.Duration
		scheduled time.Duration
		want      time.Duration
		ok        bool
	}{
		{"none requested", 0, s, s, true},
		{"negative requested", -time.Hour, s, s, true},
		{"shorter than schedule: the schedule wins", 10 * time.Second, s, s, true},
		{"longer than schedule: never early", 90 * time.Second, s, 90 * time.Second, true},
		{"far longer than schedule, within the limit", 50 * time.Minute, s, 50 * time.Minute, true},
		{"exactly the limit", limit, s, limit, true},
		{"beyond the limit: cannot be honoured", limit + time.Second, s, 0, false},
		{"huge request", time.Duration(math.MaxInt64), s, 0, false},
		{"negative schedule", time.Second, -s, time.Second, true},
	}
	for _, tt := range tests {
		got, ok := Honour(tt.requested, tt.scheduled, limit)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: Honour(%v, %v, %v) = %v, %v; want %v, %v", tt.name, tt.requested, tt.scheduled, limit, got, ok, tt.want, tt.ok)
		}
	}
	if got, ok := Honour(48*time.Hour, s, 0); !ok || got != 48*time.Hour {
		t.Errorf("no limit: Honour = %v, %v; want 48h, true", got, ok)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"100ms,1s,5s", " 1s , 2m ", "", "0", "-1s", "1s,,", "1.5h", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sched, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSchedule) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalidSchedule", s, err)
			}
			return
		}
		if len(sched) == 0 || len(sched) != strings.Count(s, ",")+1 {
			t.Fatalf("Parse(%q) = %v: wrong length", s, sched)
		}
		for _, d := range sched {
			if d <= 0 {
				t.Fatalf("Parse(%q) = %v: non-positive entry", s, sched)
			}
		}
		again, err := Parse(sched.String())
		if err != nil || again.String() != sched.String() {
			t.Fatalf("round trip of %q: %v, %v", sched, again, err)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "0", "", "-1", "Sat, 01 Mar 2025 12:01:30 GMT", "Saturday, 01-Mar-25 12:00:10 GMT", "Sat Mar  1 12:00:05 2025", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if !ok {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v, false; want 0 when not ok", s, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v: negative", s, d)
		}
		if v := strings.TrimSpace(s); isDigits(v) && len(v) < 10 && d%time.Second != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v: delta-seconds not whole seconds", s, d)
		}
	})
}
