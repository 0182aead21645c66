package service

import (
	"context"

	"github.com/heraldhq/herald/pkg/dlq"
	"github.com/heraldhq/herald/pkg/history"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// eventFinder finds an event for a resend through the history index (one
// read by position), and scans EVENTS when the index does not know it (an
// index being rebuilt, or no Redis).
type eventFinder struct {
	index *history.Reader
	scan  *dlq.StreamFinder
}

func (f eventFinder) FindEvent(ctx context.Context, tenant, id string) (*heraldv1.Event, error) {
	if ev, err := f.index.FindEvent(ctx, tenant, id); err == nil {
		return ev, nil
	}
	return f.scan.FindEvent(ctx, tenant, id)
}
