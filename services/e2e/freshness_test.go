package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestEventRightAfterEndpointChange: an event a producer publishes as soon
// as the API has answered an endpoint change is routed by the endpoints
// after the change, exactly once, with Herald's roles as separate
// processes. The API's own process forgets its cached endpoints at once;
// the router's hears of the change through its watch, a Redis round trip
// later, and routed by the endpoints from before it meanwhile: an event for
// an endpoint just created matched nothing and was acked, lost. On an idle
// machine the watch wins that race, so this test catches it on a busy one:
// without the fix it failed 2 of 4 runs with both cores kept busy (and the
// delivery rules lost an event so in one CI run); pkg/cache's
// TestCurrentSeesChangesStoredBefore shows it every time.
func TestEventRightAfterEndpointChange(t *testing.T) {
	t.Parallel()
	s := StartStack(t, 1)
	tn := s.Tenant(t)
	// The tenant's endpoints are in the router's cache before each change.
	warm := NewHook(t, nil)
	s.API.HookEndpoint(t, tn.APIKey, warm, []string{"warm.*"}, nil)
	const rounds = 15
	hooks := make([]*Hook, rounds)
	for i := range rounds {
		warmID := fmt.Sprintf("warm-%02d", i)
		s.API.PostEvent(t, tn.APIKey, warmID, "warm.ping", `{}`)
		warm.WaitDelivered(t, 10*time.Second, warmID)

		// Created, then an event for it at once.
		created, changed := fmt.Sprintf("created-%02d", i), fmt.Sprintf("changed-%02d", i)
		hooks[i] = NewHook(t, nil)
		ep := s.API.HookEndpoint(t, tn.APIKey, hooks[i], []string{fmt.Sprintf("new.%02d", i)}, nil)
		s.Bus.Publish(t, tn.ID, fmt.Sprintf("new.%02d", i), created, `{"data":{}}`)
		hooks[i].WaitDelivered(t, 10*time.Second, created)
		// Its events changed, then an event of the new type at once.
		s.API.Must(t, "PATCH", "/v1/endpoints/"+ep.ID, tn.APIKey, map[string]any{"events": []string{fmt.Sprintf("changed.%02d", i)}}, http.StatusOK, nil)
		s.Bus.Publish(t, tn.ID, fmt.Sprintf("changed.%02d", i), changed, `{"data":{}}`)
		hooks[i].WaitDelivered(t, 10*time.Second, changed)
	}
	s.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
	for i, h := range hooks {
		want := map[string]int{fmt.Sprintf("created-%02d", i): 1, fmt.Sprintf("changed-%02d", i): 1}
		if got := h.Delivered(); fmt.Sprint(got) != fmt.Sprint(want) || len(h.Reqs()) != 2 {
			t.Errorf("endpoint %d: delivered %v in %d requests, want %v in 2", i, got, len(h.Reqs()), want)
		}
	}
	if got := warm.Delivered(); len(got) != rounds || len(warm.Reqs()) != rounds {
		t.Errorf("warm endpoint: delivered %v in %d requests, want each of %d once", got, len(warm.Reqs()), rounds)
	}
}
