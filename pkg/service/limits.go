package service

import (
	"context"
	"time"

	"github.com/heraldhq/herald/pkg/limit"
	"github.com/heraldhq/herald/pkg/sender"
)

// limiter adapts limit.Limiter to the sender's Limiter: the two packages
// know nothing of each other.
type limiter struct{ *limit.Limiter }

func (l limiter) Admit(ctx context.Context, endpoint string, rate int, ttl time.Duration) (sender.Permit, sender.Admission) {
	p, d := l.Limiter.Admit(ctx, endpoint, rate, ttl)
	adm := sender.Admission{OK: d.OK, Wait: d.Wait, Reason: d.Reason}
	if p == nil {
		return nil, adm
	}
	return p, adm
}
