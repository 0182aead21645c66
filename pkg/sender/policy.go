package sender

import (
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/deliver"
	"github.com/heraldhq/herald/pkg/retry"
)

// Action is what becomes of a job after an attempt.
type Action int

// Actions.
const (
	// Ack: delivered; the job is done.
	Ack Action = iota
	// Retry: try again after Decision.Delay.
	Retry
	// DeadLetter: no attempts left (or the endpoint is gone); the job moves
	// to the DLQ, from which operators replay.
	DeadLetter
)

func (a Action) String() string {
	switch a {
	case Ack:
		return "ack"
	case Retry:
		return "retry"
	default:
		return "dead_letter"
	}
}

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	Delay  time.Duration
	Reason string
	// Disable asks for the endpoint to be disabled (410 Gone).
	Disable bool
}

// Decide is the whole rule book of what happens after an attempt, in one
// place so the rules receivers rely on can be read in one screen:
//
//   - 2xx: delivered.
//   - 410 Gone: the receiver says the endpoint no longer exists; disable it
//     now (Standard Webhooks' rule) and dead-letter the job.
//   - the attempt was the endpoint's last (attempt >= maxAttempts):
//     dead-letter.
//   - anything else (3xx, 4xx, 5xx, timeouts, connection, DNS and TLS
//     errors): retry after the schedule's delay for this attempt, with
//     jitter. A 429 or 503 with Retry-After waits at least what the
//     receiver asked and at least the schedule's delay: Herald never
//     retries sooner than asked. A receiver asking for more than
//     retryAfterMax gets the job dead-lettered, with that reason, rather
//     than a retry it said it cannot take.
func Decide(o deliver.Outcome, attempt, maxAttempts int, sched retry.Schedule, rnd func() float64, retryAfterMax time.Duration) Decision {
	switch {
	case o.OK():
		return Decision{Action: Ack}
	case o.Class == deliver.Gone:
		return Decision{Action: DeadLetter, Disable: true, Reason: "endpoint answered 410 Gone; endpoint disabled"}
	case attempt >= maxAttempts:
		return Decision{Action: DeadLetter, Reason: fmt.Sprintf("gave up after %d attempts; last: %s", attempt, describe(o))}
	}
	d := sched.Delay(attempt, rnd)
	if o.RetryAfter > 0 && (o.Status == 429 || o.Status == 503) {
		var ok bool
		if d, ok = retry.Honour(o.RetryAfter, d, retryAfterMax); !ok {
			return Decision{Action: DeadLetter, Reason: fmt.Sprintf("%s asked to retry after %s, more than the %s Herald waits at most (HERALD_RETRY_AFTER_MAX)",
				describe(o), o.RetryAfter.Round(time.Second), retryAfterMax)}
		}
	}
	return Decision{Action: Retry, Delay: d, Reason: describe(o)}
}

func describe(o deliver.Outcome) string {
	if o.Status != 0 {
		return fmt.Sprintf("%s (HTTP %d)", o.Class, o.Status)
	}
	if o.Err != "" {
		return fmt.Sprintf("%s: %s", o.Class, o.Err)
	}
	return string(o.Class)
}
