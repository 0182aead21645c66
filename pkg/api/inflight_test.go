package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
)

// inflightBytes reads herald_ingest_inflight_bytes (no test here runs in
// parallel with this one).
func inflightBytes(t *testing.T) int64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "herald_ingest_inflight_bytes" {
			return int64(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return 0
}

// eventBody is an event whose data is a string making the body n bytes.
func eventBody(id string, n int) string {
	head, tail := `{"type":"a.b","id":"`+id+`","data":"`, `"}`
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

// POST /v1/events holds at most WithMaxInflightEventBytes of bodies: an
// event that does not fit is refused with 503, Retry-After and a problem
// before its body is read, with or without Content-Length, while small
// events keep getting in; the bytes come back once the event is stored; one
// event larger than the bound is taken when it is alone.
func TestInflightEventBytesBound(t *testing.T) {
	const bound = 256 << 10
	e := newEnv(t, nil, api.WithMaxInflightEventBytes(bound))
	_, key := e.tenant("big")
	if got := inflightBytes(t); got != 0 {
		t.Fatalf("%d bytes in flight before any event", got)
	}

	// A slow client: its 200 KiB are taken before they arrive.
	slow := eventBody("slow", 200<<10)
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(testCtx(t), "POST", e.srv.URL+"/v1/events", pr)
	req.ContentLength = int64(len(slow))
	req.Header.Set("Authorization", bearer(key))
	done := make(chan int, 1)
	go func() {
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := io.WriteString(pw, slow[:1000]); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return inflightBytes(t) == int64(len(slow)) },
		"the slow event's bytes are not held (%d in flight)", inflightBytes(t))

	before := e.eventCount()
	busy := func(r response) {
		t.Helper()
		p := r.problem(t, http.StatusServiceUnavailable)
		if p.Type != "https://herald.dev/problems/busy" || !strings.Contains(p.Detail, "HERALD_MAX_INFLIGHT_EVENT_BYTES") {
			t.Fatalf("503 problem %+v", p)
		}
		if ra := r.header.Get("Retry-After"); ra != "1" {
			t.Fatalf("Retry-After %q, want 1", ra)
		}
	}
	// 100 KiB more do not fit (large bodies may use 224 KiB of the 256);
	// neither does the first buffer of a body without Content-Length.
	busy(e.do("POST", "/v1/events", bearer(key), eventBody("over", 100<<10)))
	busy(e.chunkedEvent(t, key, eventBody("over-chunked", 10<<10)))
	if got := e.eventCount(); got != before {
		t.Fatalf("%d events stored while refusing", got-before)
	}
	// A small event still gets in: the last eighth is kept for them.
	if r := e.do("POST", "/v1/events", bearer(key), eventBody("small", 40<<10)); r.status != http.StatusAccepted {
		t.Fatalf("small event beside a large one: %d %s", r.status, r.body)
	}

	// The slow event arrives and is stored: its bytes come back.
	if _, err := io.WriteString(pw, slow[1000:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if status := <-done; status != http.StatusAccepted {
		t.Fatalf("slow event: %d, want 202", status)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return inflightBytes(t) == 0 },
		"%d bytes still in flight after the event was stored", inflightBytes(t))

	// Without Content-Length the body is taken as it grows, to past the
	// share of large bodies when it is alone.
	if r := e.chunkedEvent(t, key, eventBody("chunked", 240<<10)); r.status != http.StatusAccepted {
		t.Fatalf("chunked event: %d %s", r.status, r.body)
	}
	// One event larger than the whole bound goes through alone.
	if r := e.do("POST", "/v1/events", bearer(key), eventBody("alone", 300<<10)); r.status != http.StatusAccepted {
		t.Fatalf("an event larger than the bound, alone: %d %s", r.status, r.body)
	}
	if got := e.eventCount(); got != before+4 {
		t.Fatalf("%d events stored, want 4", got-before)
	}
	if got := inflightBytes(t); got != 0 {
		t.Fatalf("%d bytes in flight at the end", got)
	}
}

// chunkedEvent posts body without Content-Length.
func (e *env) chunkedEvent(t *testing.T, key, body string) response {
	t.Helper()
	req, _ := http.NewRequestWithContext(testCtx(t), "POST", e.srv.URL+"/v1/events", io.MultiReader(strings.NewReader(body)))
	req.ContentLength = -1
	req.Header.Set("Authorization", bearer(key))
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}
