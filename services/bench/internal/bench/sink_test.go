package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
)

func newSinkServer(t *testing.T, opts ...SinkOption) (*Sink, *httptest.Server) {
	t.Helper()
	s, err := NewSink(opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func secret(t *testing.T) string {
	t.Helper()
	s, err := sign.GenerateSecret(sign.Standard)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// post sends a webhook signed with secret (or not, if empty).
func post(t *testing.T, c *http.Client, url, secret, id string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	now := time.Now()
	req.Header.Set(sign.HeaderID, id)
	req.Header.Set(sign.HeaderTimestamp, sign.FormatTimestamp(now))
	req.Header.Set("Herald-Attempt", "1")
	if secret != "" {
		s, err := sign.New(sign.Standard, secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Sign(req.Header, sign.Message{ID: id, Timestamp: now, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSinkVerifiesRecordsAndFailsOnSchedule(t *testing.T) {
	s, srv := newSinkServer(t)
	good, other := secret(t), secret(t)
	_ = s.Register("/ok", Behavior{Secret: good})
	_ = s.Register("/flaky", Behavior{Secret: good, FailFirst: true})
	s.Track("ev")
	body := []byte(`{"type":"t","timestamp":"2026-11-22T21:37:46.512Z","data":{}}`)

	if got := post(t, nil, srv.URL+"/ok", good, "ev-1", body); got != 200 {
		t.Fatalf("signed request: %d", got)
	}
	if got := post(t, nil, srv.URL+"/ok", good, "ev-1", body); got != 200 { // a duplicate
		t.Fatalf("duplicate: %d", got)
	}
	if got := post(t, nil, srv.URL+"/ok", other, "ev-2", body); got != 401 {
		t.Fatalf("wrong secret: %d", got)
	}
	if got := post(t, nil, srv.URL+"/ok", "", "ev-3", body); got != 401 {
		t.Fatalf("unsigned: %d", got)
	}
	if got := post(t, nil, srv.URL+"/nowhere", good, "ev-4", body); got != 404 {
		t.Fatalf("unknown path: %d", got)
	}
	if a, b := post(t, nil, srv.URL+"/flaky", good, "ev-5", body), post(t, nil, srv.URL+"/flaky", good, "ev-5", body); a != 500 || b != 200 {
		t.Fatalf("fail-first: %d then %d, want 500 then 200", a, b)
	}
	st := s.Stats()
	if st.Requests != 7 || st.OK != 3 || st.Unique != 2 || st.BadSignature != 2 || st.Unknown != 1 || st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
	if s.Tracked() != 2 {
		t.Fatalf("tracked %d, want 2", s.Tracked())
	}
	recs := s.Records("ev-1")
	if len(recs) != 2 || recs[0].Key != "/ok" || recs[0].AcceptedMs != 1795383466512 || recs[0].Attempt != 1 || !recs[0].OK() || recs[0].Bytes != int32(len(body)) {
		t.Fatalf("records %+v", recs)
	}
	if s.Requests("/flaky") != 2 {
		t.Fatalf("per-endpoint requests %d", s.Requests("/flaky"))
	}
	s.Reset()
	if s.Stats() != (SinkStats{}) || len(s.Records("")) != 0 {
		t.Fatal("reset kept something")
	}
}

func TestSinkBlackholeHoldsUntilTheSenderGivesUp(t *testing.T) {
	s, srv := newSinkServer(t)
	_ = s.Register("/hole", Behavior{Blackhole: true})
	c := &http.Client{Timeout: 200 * time.Millisecond}
	start := time.Now()
	if got := post(t, c, srv.URL+"/hole", "", "ev-1", []byte("{}")); got != 0 {
		t.Fatalf("blackhole answered %d", got)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("returned after %v", d)
	}
	if s.Stats().Held != 1 || len(s.Records("")) != 0 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

func TestSinkScheduleAndDefaults(t *testing.T) {
	w, err := ParseSchedule("0s-1h=503, 2h-3h=stall:2s,4h-5h=hold")
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 3 || w[0].Status != 503 || w[1].Stall != 2*time.Second || !w[2].Hold {
		t.Fatalf("windows %+v", w)
	}
	for _, bad := range []string{"1s=500", "2s-1s=500", "0s-1s=99", "0s-1s=stall:x", "a-b=500"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("ParseSchedule(%q) accepted", bad)
		}
	}
	sec := secret(t)
	_, srv := newSinkServer(t, WithDefault(Behavior{Secret: sec}), WithSchedule(w[:1]))
	if got := post(t, nil, srv.URL+"/any/path", sec, "ev-1", []byte("{}")); got != 503 {
		t.Fatalf("inside the outage window: %d", got)
	}
	if !inFraction("/x", 1) || inFraction("/x", 0) {
		t.Fatal("inFraction bounds")
	}
}

func TestSinkControlAPI(t *testing.T) {
	s, srv := newSinkServer(t)
	sec := secret(t)
	b, _ := json.Marshal(Behavior{Secret: sec})
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/_sink/endpoints/hooks/1", bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("register: %v %v", err, resp)
	}
	if got := post(t, nil, srv.URL+"/hooks/1", sec, "ev-1", []byte("{}")); got != 200 {
		t.Fatalf("registered path: %d", got)
	}
	resp, err = http.Get(srv.URL + "/_sink/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st SinkStats
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.OK != 1 {
		t.Fatalf("stats %+v", st)
	}
	resp, err = http.Get(srv.URL + "/_sink/records?prefix=ev-")
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	_ = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if r.EventID != "ev-1" || r.Key != "/hooks/1" {
		t.Fatalf("record %+v", r)
	}
	resp, _ = http.Post(srv.URL+"/_sink/reset", "", nil)
	resp.Body.Close()
	if s.Stats().OK != 0 {
		t.Fatal("not reset")
	}
}

func TestGenerateClosedLoopDirectIsVerified(t *testing.T) {
	s, srv := newSinkServer(t)
	var targets []Target
	for i := range 3 {
		sec := secret(t)
		key := "/b/" + string(rune('a'+i))
		_ = s.Register(key, Behavior{Secret: sec})
		targets = append(targets, Target{URL: srv.URL + key, Secret: sec, Type: "bench.x"})
	}
	var mu sync.Mutex
	var sizes []int
	sum, err := Generate(context.Background(), GenConfig{
		Mode: ModeDirect, Targets: targets, Concurrency: 4, Count: 90, IDPrefix: "d",
		Sizes:    []SizeClass{{Bytes: 1024, Weight: 2}, {Bytes: 4096, Weight: 1}},
		OnResult: func(seq int, r Result) { mu.Lock(); sizes = append(sizes, r.Size); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 90 || sum.Accepted != 90 || s.Stats().OK != 90 || s.Stats().BadSignature != 0 {
		t.Fatalf("summary %+v, sink %+v", sum, s.Stats())
	}
	var small, large int
	for _, r := range s.Records("d-") {
		switch {
		case r.Bytes >= 1000 && r.Bytes <= 1100:
			small++
		case r.Bytes >= 4000 && r.Bytes <= 4200:
			large++
		default:
			t.Fatalf("body of %d bytes", r.Bytes)
		}
	}
	if small < 40 || large < 15 {
		t.Fatalf("size mix: %d small, %d large", small, large)
	}
}

func TestGenerateOpenLoopAgainstIngest(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hk_test" {
			w.WriteHeader(401)
			return
		}
		var in struct {
			ID   string          `json:"id"`
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Type == "" {
			w.WriteHeader(400)
			return
		}
		if strings.HasSuffix(in.ID, "7") {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = w.Write([]byte(`{"detail":"too large"}`))
			return
		}
		w.WriteHeader(202)
		_, _ = w.Write([]byte(`{"id":"` + in.ID + `","duplicate":false}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	start := time.Now()
	sum, err := Generate(context.Background(), GenConfig{
		Mode: ModeHTTP, Targets: []Target{{URL: srv.URL, APIKey: "hk_test", Type: "a.b"}},
		Rate: 200, Concurrency: 1, Duration: 500 * time.Millisecond, IDPrefix: "o",
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	if sum.Sent < 80 || sum.Sent > 101 {
		t.Fatalf("open loop at 200/s for 0.5 s sent %d", sum.Sent)
	}
	if sum.Refused["413"] == 0 || !strings.Contains(sum.RefusalDetail["413"], "too large") || sum.Accepted+sum.Refused["413"] != sum.Sent {
		t.Fatalf("summary %+v", sum)
	}
	if _, err := Generate(context.Background(), GenConfig{Targets: []Target{{}}}); err == nil {
		t.Fatal("an unbounded load was accepted")
	}
}
