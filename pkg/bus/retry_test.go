package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestRetry(t *testing.T) {
	permanent := errors.New("bad request")
	fast := RetryBackoff(func(int) time.Duration { return time.Millisecond })
	cases := []struct {
		name      string
		fails     []error // what op returns on each try; then nil
		opts      []RetryOption
		wantTries int
		wantErr   error
	}{
		{name: "succeeds first", wantTries: 1},
		{name: "rides out a leader election", fails: []error{nats.ErrNoResponders, nats.ErrTimeout}, wantTries: 3},
		{name: "stops at a permanent error", fails: []error{nats.ErrTimeout, permanent, nats.ErrTimeout}, wantTries: 2, wantErr: permanent},
		{name: "stops after its tries", fails: []error{nats.ErrTimeout, nats.ErrTimeout, nats.ErrTimeout}, opts: []RetryOption{RetryTries(2)}, wantTries: 2, wantErr: nats.ErrTimeout},
		{name: "retries anything when told", fails: []error{permanent, permanent}, opts: []RetryOption{RetryAny()}, wantTries: 3},
		{name: "stops when the budget would end in the pause", fails: []error{nats.ErrTimeout, nats.ErrTimeout}, opts: []RetryOption{RetryFor(time.Millisecond), RetryBackoff(Linear(time.Hour))}, wantTries: 1, wantErr: nats.ErrTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tries := 0
			err := Retry(context.Background(), func(context.Context) error {
				tries++
				if tries <= len(c.fails) {
					return c.fails[tries-1]
				}
				return nil
			}, append([]RetryOption{fast}, c.opts...)...)
			if tries != c.wantTries || !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
				t.Fatalf("tries %d, err %v; want %d, %v", tries, err, c.wantTries, c.wantErr)
			}
		})
	}
}

func TestRetryStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tries := 0
	err := Retry(ctx, func(context.Context) error {
		tries++
		cancel()
		return nats.ErrTimeout
	}, RetryBackoff(Linear(time.Hour)))
	if tries != 1 || !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("tries %d, err %v; want one try ending in the timeout", tries, err)
	}
}

func TestDoubling(t *testing.T) {
	d := Doubling(250*time.Millisecond, time.Second)
	for try, want := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, time.Second} {
		if got := d(try + 1); got != want {
			t.Fatalf("pause after try %d: %v, want %v", try+1, got, want)
		}
	}
}
