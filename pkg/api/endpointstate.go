package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/hold"
	"github.com/heraldhq/herald/pkg/sender"
	"github.com/heraldhq/herald/pkg/store"
	"github.com/heraldhq/herald/pkg/valid"
)

// Backlogs reports what paused endpoints have waiting (package hold).
type Backlogs interface {
	Backlog(ctx context.Context, tenant, endpoint string) (hold.Backlog, error)
	// Backlogs returns the backlogs of the endpoints named that have one.
	Backlogs(ctx context.Context, tenant string, endpoints ...string) (map[string]hold.Backlog, error)
}

// WithBacklogs shows each endpoint's held deliveries ("backlog") in GET
// /v1/endpoints/{id} and in the listing. Without it, "backlog" is left
// out.
func WithBacklogs(b Backlogs) Option { return func(s *Server) { s.backlogs = b } }

// backlogView is an endpoint's held deliveries: how many, and when the
// oldest was held (absent when none is).
type backlogView struct {
	Count    int        `json:"count"`
	OldestAt *time.Time `json:"oldest_at,omitempty"`
}

func viewBacklog(b hold.Backlog) *backlogView {
	v := &backlogView{Count: b.Count}
	if b.Count > 0 && !b.Oldest.IsZero() {
		v.OldestAt = &b.Oldest
	}
	return v
}

// withBacklog adds the backlog to one endpoint's view. The backlog is
// extra: when HELD cannot be read, the endpoint is shown without it.
func (s *Server) withBacklog(r *http.Request, v *endpointView) {
	if s.backlogs == nil {
		return
	}
	b, err := s.backlogs.Backlog(r.Context(), tenantOf(r), v.ID)
	if err != nil {
		s.log.Warn().Err(err).Str("endpoint_id", v.ID).Msg("backlog not read; endpoint shown without it")
		return
	}
	v.Backlog = viewBacklog(b)
}

// withBacklogs adds the backlogs to a page of endpoints: one request for
// every count, and one per endpoint with held deliveries for its oldest.
func (s *Server) withBacklogs(r *http.Request, vs []endpointView) {
	if s.backlogs == nil || len(vs) == 0 {
		return
	}
	ids := make([]string, len(vs))
	for i := range vs {
		ids[i] = vs[i].ID
	}
	all, err := s.backlogs.Backlogs(r.Context(), tenantOf(r), ids...)
	if err != nil {
		s.log.Warn().Err(err).Msg("backlogs not read; endpoints listed without them")
		return
	}
	for i := range vs {
		vs[i].Backlog = viewBacklog(all[vs[i].ID])
	}
}

// RecentWindow is the period of an endpoint's "recent" attempt counts.
const RecentWindow = 24 * time.Hour

// recentView is how an endpoint's attempts went over RecentWindow: a
// settings page's success rate.
type recentView struct {
	Since     time.Time `json:"since"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
}

// withRecent adds the recent attempt counts to endpoint views, in one
// read of the history. Like the backlog they are extra: without a history,
// or when it cannot be read, the endpoints are shown without them.
func (s *Server) withRecent(r *http.Request, vs []endpointView) {
	if s.history == nil || len(vs) == 0 {
		return
	}
	ids := make([]string, len(vs))
	for i := range vs {
		ids[i] = vs[i].ID
	}
	since := time.Now().Add(-RecentWindow).UTC().Truncate(time.Second)
	counts, err := s.history.Counts(r.Context(), tenantOf(r), ids, since)
	if err != nil {
		s.log.Warn().Err(err).Msg("recent attempt counts not read; endpoints shown without them")
		return
	}
	for i := range vs {
		c := counts[vs[i].ID]
		vs[i].Recent = &recentView{Since: since, Succeeded: c.Succeeded, Failed: c.Failed}
	}
}

// stateChange is what a request's "status", "enabled" and "paused" ask
// for, checked against each other.
type stateChange struct {
	status  string // the state asked for; "" when none is
	unpause bool   // "paused": false alone: leave paused, stay disabled
}

// state works out the state change in asks for, and reports conflicting
// or invalid fields. "status" sets the state; "enabled": false disables;
// "enabled": true leaves disabled but does not resume a paused endpoint (a
// form that always sends it must not undo a pause); "paused": true pauses
// (from any state); "paused": false resumes a paused endpoint and leaves a
// disabled one disabled.
func (in *endpointInput) state(errs *valid.Errors) stateChange {
	if in.Status != nil {
		st := *in.Status
		switch st {
		case store.StatusActive, store.StatusPaused, store.StatusDisabled:
		default:
			errs.Add("status", "must be active, paused or disabled")
			return stateChange{}
		}
		if in.Enabled != nil && *in.Enabled != (st != store.StatusDisabled) {
			errs.Add("enabled", "conflicts with status %q; send one of them", st)
		}
		if in.Paused != nil && *in.Paused != (st == store.StatusPaused) {
			errs.Add("paused", "conflicts with status %q; send one of them", st)
		}
		return stateChange{status: st}
	}
	switch {
	case in.Enabled != nil && !*in.Enabled && in.Paused != nil && *in.Paused:
		errs.Add("paused", "conflicts with enabled false: an endpoint is active, paused or disabled")
	case in.Enabled != nil && !*in.Enabled:
		return stateChange{status: store.StatusDisabled}
	case in.Paused != nil && *in.Paused:
		return stateChange{status: store.StatusPaused}
	case in.Paused != nil:
		return stateChange{unpause: true}
	}
	return stateChange{}
}

// apply puts e in the state asked for.
func (c stateChange) apply(e *store.Endpoint, in *endpointInput) {
	if c.status != "" {
		e.SetStatus(c.status)
		return
	}
	if in.Enabled != nil && *in.Enabled && !e.Enabled {
		e.Enabled, e.DisabledReason = true, ""
	}
	if c.unpause {
		e.Paused = false
	}
}

// Custom header values often carry credentials (an Authorization token),
// so listings mask them as attempt records do (sender.Mask); one
// endpoint's own views show them, as they show its secret.
const (
	maskedShort  = sender.MaskedShort
	maskedSuffix = sender.MaskedSuffix
)

// maskHeaders returns h with every value masked.
func maskHeaders(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = sender.Mask(v)
	}
	return out
}

// checkNotMasked refuses header values copied from a listing: stored, they
// would replace the real values with the mask.
func checkNotMasked(errs *valid.Errors, h *map[string]string) {
	if h == nil {
		return
	}
	for k, v := range *h {
		if v == maskedShort || strings.HasSuffix(v, maskedSuffix) {
			errs.Add("headers."+k, "is the masked value a listing shows; send the real value (GET /v1/endpoints/{id} shows it), or leave headers out to keep them")
		}
	}
}
