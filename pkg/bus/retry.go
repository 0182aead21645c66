package bus

import (
	"context"
	"errors"
	"time"
)

// Retry runs op until it succeeds, fails for a reason that will not pass,
// or the caller's patience (RetryTries, RetryFor) ends, pausing between
// tries. It is the one loop for every JetStream call that has to ride out a
// leader election or a server restart: the sender storing a retry or a dead
// letter, the router routing again, a replay publishing a job.
//
// By default it retries what IsRetryable accepts, pauses 250 ms doubling to
// 4 s, and stops only when ctx ends. It returns op's last error, joined
// with ctx's when ctx ended the wait.
func Retry(ctx context.Context, op func(context.Context) error, opts ...RetryOption) error {
	o := retryOptions{retryable: IsRetryable, backoff: Doubling(250*time.Millisecond, 4*time.Second)}
	for _, opt := range opts {
		opt(&o)
	}
	var deadline time.Time
	if o.budget > 0 {
		deadline = time.Now().Add(o.budget)
	}
	for try := 1; ; try++ {
		err := op(ctx)
		if err == nil || ctx.Err() != nil || !o.retryable(err) || (o.tries > 0 && try >= o.tries) {
			return err
		}
		pause := o.backoff(try)
		if !deadline.IsZero() && time.Now().Add(pause).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// RetryOption tunes Retry.
type RetryOption func(*retryOptions)

type retryOptions struct {
	tries     int
	budget    time.Duration
	retryable func(error) bool
	backoff   func(try int) time.Duration
}

// RetryTries stops after n tries in all.
func RetryTries(n int) RetryOption { return func(o *retryOptions) { o.tries = n } }

// RetryFor stops when the next pause would end after d from the first try.
func RetryFor(d time.Duration) RetryOption { return func(o *retryOptions) { o.budget = d } }

// RetryIf retries the errors retryable accepts instead of IsRetryable's.
func RetryIf(retryable func(error) bool) RetryOption {
	return func(o *retryOptions) { o.retryable = retryable }
}

// RetryAny retries every error: for calls whose failures are all worth
// another try (a stream just recreated answers in unusual ways).
func RetryAny() RetryOption { return RetryIf(func(error) bool { return true }) }

// RetryBackoff sets the pause after the try-th failure.
func RetryBackoff(backoff func(try int) time.Duration) RetryOption {
	return func(o *retryOptions) { o.backoff = backoff }
}

// Linear pauses step, 2·step, 3·step...
func Linear(step time.Duration) func(int) time.Duration {
	return func(try int) time.Duration { return time.Duration(try) * step }
}

// Doubling pauses first, 2·first, 4·first... up to limit.
func Doubling(first, limit time.Duration) func(int) time.Duration {
	return func(try int) time.Duration {
		d := first
		for i := 1; i < try && d < limit; i++ {
			d *= 2
		}
		return min(d, limit)
	}
}
