package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("publish job: %w", nats.ErrNoResponders), true},
		{fmt.Errorf("store: %w", jetstream.ErrNoStreamResponse), true},
		{nats.ErrConnectionClosed, true},
		{nats.ErrConnectionReconnecting, true},
		{nats.ErrTimeout, true},
		{jetstream.ErrConsumerNotFound, true},
		{&jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, false},
		{jetstream.ErrStreamNotFound, false},
		{nats.ErrPermissionViolation, false},
		{nats.ErrMaxPayload, false},
		// A message that merely mentions a retryable condition is not one.
		{errors.New("endpoint said: no responders"), false},
		{context.Canceled, false},
	} {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
