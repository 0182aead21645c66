package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
)

// Data with spacing, key order, number forms and escapes that any
// re-encoding would change: it must reach receivers byte for byte.
const trickyData = `{ "title" : "Hello,\u00a0world \ud83d\ude00",  "n":2.50, "big": 12345678901234567890, "z":1,"a":[ true ,null, "<&>"] }`

// checkEnvelope asserts that a delivered body is the Standard Webhooks
// envelope {"type","timestamp","data"}, in that order, with data byte for
// byte as sent.
func checkEnvelope(t testing.TB, body []byte, typ, data string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("body %s: not a JSON object", body)
	}
	var keys []string
	fields := map[string]json.RawMessage{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		keys = append(keys, k.(string))
		fields[k.(string)] = v
	}
	if !slices.Equal(keys, []string{"type", "timestamp", "data"}) {
		t.Fatalf("body keys %v, want [type timestamp data]: %s", keys, body)
	}
	var gotType, ts string
	_ = json.Unmarshal(fields["type"], &gotType)
	_ = json.Unmarshal(fields["timestamp"], &ts)
	if gotType != typ {
		t.Errorf("body type %q, want %q", gotType, typ)
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || time.Since(at) > time.Minute || time.Until(at) > 5*time.Second {
		t.Errorf("body timestamp %q: want an RFC 3339 time of the last minute (%v)", ts, err)
	}
	if got := string(fields["data"]); got != strings.TrimSpace(data) {
		t.Errorf("data changed on the way:\n got %s\nwant %s", got, data)
	}
}

// checkDelivery asserts one event arrived exactly once, on attempt 1, with
// the envelope expected.
func checkDelivery(t testing.TB, rcv *Receiver, id, typ, data string) {
	t.Helper()
	if got := rcv.Attempts(id); !slices.Equal(got, []int{1}) {
		t.Errorf("event %s: Herald-Attempt %v, want [1]", id, got)
	}
	reqs := rcv.Requests(id)
	if len(reqs) == 0 {
		t.Fatalf("event %s: nothing received", id)
	}
	q := reqs[0]
	if ct := q.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("event %s: Content-Type %q", id, ct)
	}
	if ua := q.Header.Get("User-Agent"); !strings.HasPrefix(ua, "Herald/") {
		t.Errorf("event %s: User-Agent %q, want Herald/...", id, ua)
	}
	checkEnvelope(t, q.Body, typ, data)
}

// TestAllInOne runs the all-in-one in process (service.Run, embedded NATS,
// real Redis) and checks delivery semantics against it; each subtest has its
// own tenant.
func TestAllInOne(t *testing.T) {
	t.Parallel()
	h := StartInProcess(t)

	t.Run("HTTPAndNATSEventsArriveSigned", func(t *testing.T) {
		t.Parallel()
		tn := h.Tenant(t)
		rcv := NewReceiver(t)
		h.API.CreateEndpoint(t, tn.APIKey, rcv, []string{"post.*"}, nil)

		h.API.PostEvent(t, tn.APIKey, "http-1", "post.created", trickyData)
		// Straight to NATS, with "type" in the body ...
		typedData := `{"via": "nats",  "typed":true}`
		// (as a producer: the tenant's API key is the NATS token)
		producer := h.Producer(t, tn)
		producer.Publish(t, tn.ID, "post.updated", "nats-typed",
			`{"type":"post.updated","id":"nats-typed","data":`+typedData+`}`)
		// ... and without: the subject names the type, Nats-Msg-Id the id.
		producer.Publish(t, tn.ID, "post.deleted", "nats-untyped", `{"data":`+trickyData+`}`)

		rcv.WaitDelivered(t, 10*time.Second, "http-1", "nats-typed", "nats-untyped")
		checkDelivery(t, rcv, "http-1", "post.created", trickyData)
		checkDelivery(t, rcv, "nats-typed", "post.updated", typedData)
		checkDelivery(t, rcv, "nats-untyped", "post.deleted", trickyData)
	})

	t.Run("IdempotencyKeyDeliversOnce", func(t *testing.T) {
		t.Parallel()
		tn := h.Tenant(t)
		rcv := NewReceiver(t)
		h.API.CreateEndpoint(t, tn.APIKey, rcv, []string{"order.*"}, nil)

		first := h.API.PostEvent(t, tn.APIKey, "order-42", "order.paid", `{"n":1}`)
		second := h.API.PostEvent(t, tn.APIKey, "order-42", "order.paid", `{"n":1}`)
		if first.Duplicate || !second.Duplicate {
			t.Errorf("duplicate flags: first %v, second %v; want false, true", first.Duplicate, second.Duplicate)
		}
		rcv.WaitDelivered(t, 10*time.Second, "order-42")
		if n := rcv.Delivered("order-42"); n != 1 {
			t.Fatalf("order-42 delivered %d times after it first arrived", n)
		}
		// A distinct event sent afterwards arrives; the duplicate still has not.
		h.API.PostEvent(t, tn.APIKey, "order-43", "order.paid", `{"n":2}`)
		rcv.WaitDelivered(t, 10*time.Second, "order-43")
		h.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		if n := rcv.Delivered("order-42"); n != 1 {
			t.Fatalf("order-42 (posted twice with the same id) delivered %d times, want 1", n)
		}
		if got := len(rcv.Requests("order-42")); got != 1 {
			t.Fatalf("order-42: %d requests, want 1", got)
		}
	})

	t.Run("RetriesUntilSuccess", func(t *testing.T) {
		t.Parallel()
		tn := h.Tenant(t)
		rcv := NewReceiver(t)
		rcv.FailFirst(2)
		h.API.CreateEndpoint(t, tn.APIKey, rcv, []string{"post.*"}, map[string]any{"max_attempts": 5})

		h.API.PostEvent(t, tn.APIKey, "flaky-1", "post.created", trickyData)
		rcv.WaitDelivered(t, 10*time.Second, "flaky-1")
		h.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		if got := rcv.Attempts("flaky-1"); !slices.Equal(got, []int{1, 2, 3}) {
			t.Fatalf("Herald-Attempt headers %v, want [1 2 3]", got)
		}
		reqs := rcv.Requests("flaky-1")
		if reqs[0].Status != 500 || reqs[1].Status != 500 || reqs[2].Status != 200 {
			t.Fatalf("statuses %d %d %d, want 500 500 200", reqs[0].Status, reqs[1].Status, reqs[2].Status)
		}
		for i, q := range reqs {
			if !bytes.Equal(q.Body, reqs[0].Body) {
				t.Errorf("attempt %d body differs from attempt 1:\n%s\n%s", i+1, q.Body, reqs[0].Body)
			}
		}
		checkEnvelope(t, reqs[2].Body, "post.created", trickyData)
		if n := h.Bus.DLQCount(tn.ID, "*"); n > 0 {
			t.Errorf("a delivered event left %d dead letters", n)
		}
	})

	t.Run("DeadLetterAfterMaxAttempts", func(t *testing.T) {
		t.Parallel()
		tn := h.Tenant(t)
		rcv := NewReceiver(t)
		rcv.AlwaysFail(http.StatusInternalServerError)
		ep := h.API.CreateEndpoint(t, tn.APIKey, rcv, []string{"post.*"}, map[string]any{"max_attempts": 3})

		h.API.PostEvent(t, tn.APIKey, "doomed-1", "post.created", `{"x":1}`)
		testenv.Eventually(t, 15*time.Second, func() bool { return h.Bus.DLQCount(tn.ID, ep.ID) >= 1 },
			"no dead letter on herald.dlq.%s.%s", tn.ID, ep.ID)
		// Once the job has left DELIVERIES no further attempt can come.
		h.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		if got := rcv.Attempts("doomed-1"); !slices.Equal(got, []int{1, 2, 3}) {
			t.Fatalf("Herald-Attempt headers %v, want exactly [1 2 3]", got)
		}
		dls := h.Bus.DeadLetters(t, tn.ID, ep.ID)
		if len(dls) != 1 {
			t.Fatalf("%d dead letters, want 1", len(dls))
		}
		dl := dls[0]
		if dl.Job.GetEvent().GetId() != "doomed-1" || dl.Job.GetEndpointId() != ep.ID || dl.Job.GetTenantId() != tn.ID {
			t.Errorf("dead letter job: event %q endpoint %q tenant %q", dl.Job.GetEvent().GetId(), dl.Job.GetEndpointId(), dl.Job.GetTenantId())
		}
		if !strings.Contains(dl.Reason, "3 attempts") || !strings.Contains(dl.Reason, "HTTP 500") {
			t.Errorf("dead letter reason %q: want it to name the 3 attempts and the last error (HTTP 500)", dl.Reason)
		}
		if len(dl.Attempts) == 0 {
			t.Fatalf("dead letter carries no attempts")
		}
		last := dl.Attempts[len(dl.Attempts)-1]
		if last.StatusCode != 500 || last.ErrorClass != "server_error" || last.Error == "" || last.Number != 3 {
			t.Errorf("last attempt: status %d class %q error %q number %d; want 500 server_error <text> 3",
				last.StatusCode, last.ErrorClass, last.Error, last.Number)
		}
		if string(last.ResponseBody) != "receiver says no" {
			t.Errorf("last attempt response body %q", last.ResponseBody)
		}
	})

	t.Run("EndpointFilters", func(t *testing.T) {
		t.Parallel()
		tn := h.Tenant(t)
		exact, prefix, all, other := NewReceiver(t), NewReceiver(t), NewReceiver(t), NewReceiver(t)
		h.API.CreateEndpoint(t, tn.APIKey, exact, []string{"post.created"}, nil)
		pEP := h.API.CreateEndpoint(t, tn.APIKey, prefix, []string{"post.*"}, nil)
		h.API.CreateEndpoint(t, tn.APIKey, all, []string{"*"}, nil)
		h.API.CreateEndpoint(t, tn.APIKey, other, []string{"comment.*"}, nil)

		h.API.PostEvent(t, tn.APIKey, "f-created", "post.created", `{}`)
		h.API.PostEvent(t, tn.APIKey, "f-deleted", "post.deleted", `{}`)
		h.API.PostEvent(t, tn.APIKey, "f-signup", "user.signup", `{}`)
		// Targeted at the prefix endpoint: the others subscribe to the type
		// but must not get it.
		h.API.Post(t, tn.APIKey, eventJSON("f-targeted", "post.created", `{}`, pEP.ID))

		h.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		want := map[string]struct {
			rcv *Receiver
			ids []string
		}{
			"post.created": {exact, []string{"f-created"}},
			"post.*":       {prefix, []string{"f-created", "f-deleted", "f-targeted"}},
			"*":            {all, []string{"f-created", "f-deleted", "f-signup"}},
			"comment.*":    {other, nil},
		}
		for filter, w := range want {
			got := w.rcv.IDs()
			slices.Sort(got)
			if !slices.Equal(got, w.ids) {
				t.Errorf("endpoint with events [%s] received %v, want %v", filter, got, w.ids)
			}
			for _, id := range got {
				if n := w.rcv.Delivered(id); n != 1 {
					t.Errorf("endpoint [%s]: %s delivered %d times", filter, id, n)
				}
			}
		}
	})

	t.Run("DisabledEndpointGetsNothing", func(t *testing.T) {
		t.Parallel()
		tn := h.Tenant(t)
		off, on := NewReceiver(t), NewReceiver(t)
		offEP := h.API.CreateEndpoint(t, tn.APIKey, off, []string{"post.*"}, nil)
		h.API.CreateEndpoint(t, tn.APIKey, on, []string{"post.*"}, nil)
		// Both get the first event, so both are in every cache.
		h.API.PostEvent(t, tn.APIKey, "before-off", "post.created", `{}`)
		off.WaitDelivered(t, 10*time.Second, "before-off")
		on.WaitDelivered(t, 10*time.Second, "before-off")

		var ep Endpoint
		h.API.Must(t, "PATCH", "/v1/endpoints/"+offEP.ID, tn.APIKey, map[string]any{"enabled": false}, http.StatusOK, &ep)
		if ep.Enabled {
			t.Fatalf("PATCH enabled:false answered enabled=true")
		}
		var ids []string
		for i := range 5 {
			id := fmt.Sprintf("while-off-%d", i)
			ids = append(ids, id)
			h.API.PostEvent(t, tn.APIKey, id, "post.created", `{}`)
		}
		on.WaitDelivered(t, 10*time.Second, ids...)
		h.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
		if got := off.IDs(); !slices.Equal(got, []string{"before-off"}) {
			t.Fatalf("disabled endpoint received %v, want only the event sent before it was disabled", got)
		}
	})

	t.Run("PatchedEventsSeenByRoutingWithin1s", func(t *testing.T) {
		t.Parallel()
		checkPatchSeen(t, h)
	})

	// Refusals at the edge are problem documents through the HTTP server
	// as service.Run configures it (headers over the API's limit reach the
	// API, whose 431 is one), and the description describes them.
	t.Run("EdgeRefusalsAreProblems", func(t *testing.T) {
		t.Parallel()
		c := &http.Client{Timeout: 10 * time.Second, Transport: checked(t, nil)}
		for _, tc := range []struct {
			name, method, path, ct, body, padding string
			status                                int
		}{
			{"headers over the limit", "GET", "/openapi.yaml", "", "", strings.Repeat("a", 64<<10), http.StatusRequestHeaderFieldsTooLarge},
			{"not JSON", "POST", "/v1/tenants", "text/plain", `{"name":"x"}`, "", http.StatusUnsupportedMediaType},
			{"a key twice", "POST", "/v1/tenants", "application/json", `{"name":"x","name":"y"}`, "", http.StatusBadRequest},
		} {
			req, err := http.NewRequest(tc.method, h.API.Base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+h.AdminToken)
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			if tc.padding != "" {
				req.Header.Set("X-Padding", tc.padding)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s: %d %s, want a %d problem document", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status)
			}
		}
	})
}

// checkPatchSeen changes an endpoint's events from post.* to comment.* and
// checks that routing follows within 1 s: probes of the new type sent from
// 1 s after the PATCH on must all arrive, and an event of the old type sent
// afterwards must not.
func checkPatchSeen(t *testing.T, d *Deployment) {
	t.Helper()
	tn := d.Tenant(t)
	rcv, control := NewReceiver(t), NewReceiver(t)
	ep := d.API.CreateEndpoint(t, tn.APIKey, rcv, []string{"post.*"}, nil)
	d.API.CreateEndpoint(t, tn.APIKey, control, []string{"post.*"}, nil)
	// Warm every cache with the old filter.
	d.API.PostEvent(t, tn.APIKey, "warm", "post.created", `{}`)
	rcv.WaitDelivered(t, 10*time.Second, "warm")
	control.WaitDelivered(t, 10*time.Second, "warm")

	d.API.Must(t, "PATCH", "/v1/endpoints/"+ep.ID, tn.APIKey, map[string]any{"events": []string{"comment.*"}}, http.StatusOK, nil)
	patched := time.Now()

	// Probe: one comment event every 50 ms until one arrives (bounded).
	var sent []time.Time
	var ids []string
	probe := func() {
		id := fmt.Sprintf("probe-%d", len(ids))
		d.API.PostEvent(t, tn.APIKey, id, "comment.added", `{}`)
		ids = append(ids, id)
		sent = append(sent, time.Now())
	}
	first := -1
	testenv.Eventually(t, 5*time.Second, func() bool {
		for i, id := range ids {
			if rcv.Delivered(id) > 0 {
				first = i
				return true
			}
		}
		if len(ids) == 0 || time.Since(sent[len(sent)-1]) >= 50*time.Millisecond {
			probe()
		}
		return false
	}, "no comment.added event reached the endpoint within 5s of changing its events to comment.*")
	if lag := sent[first].Sub(patched); lag > time.Second {
		t.Errorf("routing saw the new events filter only for an event sent %v after the PATCH; want within 1s", lag.Round(time.Millisecond))
	}
	// From then on every probe is routed with the new filter (no stale cache
	// flips back), and the old type no longer is.
	probe()
	rcv.WaitDelivered(t, 10*time.Second, ids[first:]...)
	d.API.PostEvent(t, tn.APIKey, "old-type-after", "post.created", `{}`)
	control.WaitDelivered(t, 10*time.Second, "old-type-after")
	d.Bus.WaitQuiet(t, tn.ID, 10*time.Second)
	if n := rcv.Delivered("old-type-after"); n != 0 {
		t.Errorf("post.created reached the endpoint after its events were changed to comment.*")
	}
	t.Logf("PATCH seen by routing: first routed probe was sent %v after the PATCH (%d probes)", sent[first].Sub(patched).Round(time.Millisecond), len(ids))
}
