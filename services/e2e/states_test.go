package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
)

// endpointView is the part of GET /v1/endpoints/{id} the state test reads.
type endpointView struct {
	Status  string `json:"status"`
	Enabled bool   `json:"enabled"`
	Backlog *struct {
		Count    int        `json:"count"`
		OldestAt *time.Time `json:"oldest_at"`
	} `json:"backlog"`
}

// deliveryState is one endpoint's entry of GET /v1/events/{id}.
type deliveryState struct {
	EndpointID string `json:"endpoint_id"`
	State      string `json:"state"`
	Reason     string `json:"reason"`
}

// deliveryOf reads what GET /v1/events/{id} says of event id at endpoint
// ("" when the event or the endpoint is not listed yet).
func deliveryOf(a *API, key, id, endpoint string) deliveryState {
	ctx, cancel := quick()
	defer cancel()
	status, b, err := a.Call(ctx, "GET", "/v1/events/"+id, key, nil)
	var ev struct {
		Deliveries []deliveryState `json:"deliveries"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(b, &ev) != nil {
		return deliveryState{}
	}
	for _, d := range ev.Deliveries {
		if d.EndpointID == endpoint {
			return d
		}
	}
	return deliveryState{}
}

// TestEndpointStates runs an endpoint through its states on the
// all-in-one: paused, events are held (nothing arrives, the backlog counts
// them) and all arrive once after the resume; disabled, events are
// recorded as skipped (the event says so) and recover brings each back
// exactly once after it is enabled again.
func TestEndpointStates(t *testing.T) {
	t.Parallel()
	h := StartInProcess(t)
	tn := h.Tenant(t)
	rcv := NewReceiver(t)
	ep := h.API.CreateEndpoint(t, tn.APIKey, rcv, []string{"state.*"}, nil)
	path := "/v1/endpoints/" + ep.ID
	get := func() endpointView {
		t.Helper()
		var v endpointView
		h.API.Must(t, "GET", path, tn.APIKey, nil, http.StatusOK, &v)
		return v
	}
	patch := func(body string, status string) {
		t.Helper()
		var v endpointView
		h.API.Must(t, "PATCH", path, tn.APIKey, json.RawMessage(body), http.StatusOK, &v)
		if v.Status != status {
			t.Fatalf("PATCH %s: status %q, want %q", body, v.Status, status)
		}
	}

	// Paused: held, counted, nothing sent.
	patch(`{"paused":true}`, "paused")
	var held []string
	for i := range 20 {
		id := fmt.Sprintf("held-%02d", i)
		held = append(held, id)
		h.API.PostEvent(t, tn.APIKey, id, "state.changed", fmt.Sprintf(`{"n":%d}`, i))
	}
	var v endpointView
	testenv.Eventually(t, 15*time.Second, func() bool { v = get(); return v.Backlog != nil && v.Backlog.Count == 20 },
		"%s", testenv.Lazy(func() string { return fmt.Sprintf("backlog %+v, want 20 held", v.Backlog) }))
	if v.Backlog.OldestAt == nil || time.Since(*v.Backlog.OldestAt) > time.Minute {
		t.Fatalf("backlog oldest_at %v, want the first hold's time", v.Backlog.OldestAt)
	}
	h.Bus.WaitQuiet(t, tn.ID, 10*time.Second) // routed, and nothing left in DELIVERIES
	if got := rcv.IDs(); len(got) != 0 {
		t.Fatalf("a paused endpoint received %v", got)
	}
	if d := deliveryOf(h.API, tn.APIKey, "held-00", ep.ID); d.State != "held" {
		t.Fatalf("GET /v1/events/held-00 while paused: %+v, want held", d)
	}

	// Resumed: every held event arrives, once.
	patch(`{"paused":false}`, "active")
	rcv.WaitDelivered(t, 20*time.Second, held...)
	testenv.Eventually(t, 10*time.Second, func() bool { v = get(); return v.Backlog != nil && v.Backlog.Count == 0 }, "backlog not emptied by the resume")
	h.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
	for _, id := range held {
		if n, reqs := rcv.Delivered(id), len(rcv.Requests(id)); n != 1 || reqs != 1 {
			t.Errorf("%s: delivered %d times in %d requests after the resume, want once", id, n, reqs)
		}
	}
	if got := rcv.IDs(); len(got) != len(held) {
		t.Fatalf("received %d distinct events, want %d", len(got), len(held))
	}
	t.Logf("arrival order after the resume: %v", rcv.IDs())

	// Disabled: every event is recorded as skipped, and says so.
	patch(`{"enabled":false}`, "disabled")
	since := time.Now().Add(-time.Second)
	var skipped []string
	for i := range 5 {
		id := fmt.Sprintf("skipped-%d", i)
		skipped = append(skipped, id)
		h.API.PostEvent(t, tn.APIKey, id, "state.changed", fmt.Sprintf(`{"n":%d}`, i))
	}
	var dl []DLQEntry
	testenv.Eventually(t, 15*time.Second, func() bool {
		var ok bool
		dl, ok = h.API.DLQ(tn.APIKey, ep.ID)
		return ok && len(dl) == len(skipped)
	}, "%s", testenv.Lazy(func() string { return fmt.Sprintf("%d dead letters, want %d skipped", len(dl), len(skipped)) }))
	entries := skippedEntries(t, h.API, tn.APIKey, ep.ID)
	for _, e := range entries {
		if !e.Skipped || !strings.HasPrefix(e.Reason, "endpoint disabled") || len(e.Attempts) != 0 {
			t.Errorf("dead letter of %s: skipped %v reason %q attempts %d; want skipped, endpoint disabled, none", e.Event.ID, e.Skipped, e.Reason, len(e.Attempts))
		}
	}
	var d deliveryState
	testenv.Eventually(t, 10*time.Second, func() bool { d = deliveryOf(h.API, tn.APIKey, "skipped-0", ep.ID); return d.State == "skipped" },
		"%s", testenv.Lazy(func() string { return fmt.Sprintf("GET /v1/events/skipped-0: %+v, want skipped", d) }))
	if !strings.HasPrefix(d.Reason, "endpoint disabled") {
		t.Errorf("skipped reason %q", d.Reason)
	}
	h.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
	if got := len(rcv.IDs()); got != len(held) {
		t.Fatalf("a disabled endpoint received requests: %d distinct events, want still %d", got, len(held))
	}
	recoverPath := path + "/recover?since=" + url.QueryEscape(since.Format(time.RFC3339Nano))
	h.API.Must(t, "POST", recoverPath, tn.APIKey, nil, http.StatusConflict, nil)

	// Enabled again, then recovered: each skipped event arrives once.
	patch(`{"enabled":true}`, "active")
	h.API.Must(t, "POST", recoverPath, tn.APIKey, nil, http.StatusAccepted, nil)
	rcv.WaitDelivered(t, 20*time.Second, skipped...)
	h.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool {
		l, ok := h.API.DLQ(tn.APIKey, ep.ID)
		return ok && len(l) == 0
	}, "recovered dead letters left in the DLQ")
	for _, id := range append(held, skipped...) {
		if n, reqs := rcv.Delivered(id), len(rcv.Requests(id)); n != 1 || reqs != 1 {
			t.Errorf("%s: delivered %d times in %d requests, want exactly once", id, n, reqs)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { d = deliveryOf(h.API, tn.APIKey, "skipped-0", ep.ID); return d.State == "delivered" },
		"%s", testenv.Lazy(func() string { return fmt.Sprintf("GET /v1/events/skipped-0 after recover: %+v, want delivered", d) }))
}

// skippedEntry is a dead letter as GET /v1/dlq lists it, with its flag.
type skippedEntry struct {
	DLQEntry
	Skipped bool `json:"skipped"`
}

func skippedEntries(t *testing.T, a *API, key, endpoint string) []skippedEntry {
	t.Helper()
	var p struct {
		Data []skippedEntry `json:"data"`
	}
	a.Must(t, "GET", "/v1/dlq?endpoint_id="+endpoint, key, nil, http.StatusOK, &p)
	return p.Data
}
