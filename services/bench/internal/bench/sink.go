package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/verify"
)

// Behavior is how a sink endpoint answers.
type Behavior struct {
	// Secret is the endpoint's whsec_ secret; requests are verified with the
	// Standard Webhooks scheme (package verify). Empty: not verified.
	Secret string `json:"secret,omitempty"`
	// FailFirst answers 500 to the first request for each event id, and 2xx
	// after: the receiver a retry must get past.
	FailFirst bool `json:"fail_first,omitempty"`
	// FailRate answers 500 to this fraction of requests, at random.
	FailRate float64 `json:"fail_rate,omitempty"`
	// Blackhole never answers: the request is held until the sender gives
	// up (its timeout closes the connection) or the sink's hold limit.
	Blackhole bool `json:"blackhole,omitempty"`
	// Stall delays every answer by this long.
	Stall time.Duration `json:"stall,omitempty"`
}

// Window is a time window, relative to the sink's start, during which every
// request gets Status (or is stalled for Stall, or held like a blackhole
// when Hold is set): the schedule of outages a sink plays.
type Window struct {
	From, To time.Duration
	Status   int
	Stall    time.Duration
	Hold     bool
}

// ParseSchedule reads windows written "from-to=what" separated by commas,
// e.g. "10s-20s=500,30s-35s=stall:2s,40s-45s=hold".
func ParseSchedule(s string) ([]Window, error) {
	var out []Window
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		span, what, ok := strings.Cut(part, "=")
		a, b, ok2 := strings.Cut(span, "-")
		if !ok || !ok2 {
			return nil, fmt.Errorf("schedule %q: want from-to=status|stall:duration|hold", part)
		}
		from, err1 := time.ParseDuration(a)
		to, err2 := time.ParseDuration(b)
		if err1 != nil || err2 != nil || to <= from {
			return nil, fmt.Errorf("schedule %q: bad window", part)
		}
		w := Window{From: from, To: to}
		switch {
		case what == "hold":
			w.Hold = true
		case strings.HasPrefix(what, "stall:"):
			d, err := time.ParseDuration(strings.TrimPrefix(what, "stall:"))
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("schedule %q: bad stall", part)
			}
			w.Stall = d
		default:
			st, err := strconv.Atoi(what)
			if err != nil || st < 100 || st > 599 {
				return nil, fmt.Errorf("schedule %q: bad status", part)
			}
			w.Status = st
		}
		out = append(out, w)
	}
	return out, nil
}

// Record is one request the sink answered.
type Record struct {
	EventID string `json:"id"`
	Key     string `json:"key"`     // the endpoint: the request path
	RecvNs  int64  `json:"recv_ns"` // unix ns, once the whole body was read
	// AcceptedMs is the body's "timestamp" (Herald's accepted time, unix
	// ms); 0 when the body has none (raw payloads).
	AcceptedMs int64 `json:"accepted_ms,omitempty"`
	Attempt    int32 `json:"attempt,omitempty"` // Herald-Attempt
	Status     int32 `json:"status"`            // what the sink answered
	Bytes      int32 `json:"bytes"`
}

// StatusClientGone is the Status of a record whose sender closed the
// connection before the sink answered (nginx's 499): received, not
// accepted.
const StatusClientGone = 499

// OK reports whether the sink accepted the request (2xx).
func (r Record) OK() bool { return r.Status >= 200 && r.Status < 300 }

type sinkEndpoint struct {
	key      string
	b        Behavior
	verifier *verify.Verifier
	requests atomic.Int64
}

// SinkStats are the sink's counters.
type SinkStats struct {
	Requests     int64 `json:"requests"`
	OK           int64 `json:"ok"`
	Unique       int64 `json:"unique"` // distinct (event id, endpoint) answered 2xx
	Failed       int64 `json:"failed"` // answered 5xx on purpose
	Held         int64 `json:"held"`   // blackholed
	BadSignature int64 `json:"bad_signature"`
	Unknown      int64 `json:"unknown_endpoint"`
	BadRequest   int64 `json:"bad_request"`
}

// Sink is a webhook receiver for load tests: it verifies signatures,
// answers 2xx or fails or stalls on a schedule, and records the receive
// time and event id of every request. It serves the control API under
// /_sink/ (see ServeHTTP). It is safe for concurrent use.
type Sink struct {
	start      time.Time
	schedule   []Window
	holdMax    time.Duration
	fallback   Behavior // for paths not registered; nil verifier: 404
	fbVer      *verify.Verifier
	acceptAll  bool
	ffFraction float64

	mu        sync.RWMutex
	endpoints map[string]*sinkEndpoint

	recMu   sync.Mutex
	records []Record
	seen    map[string]uint32 // 2xx per id+"\x00"+key
	failed  map[string]bool   // FailFirst: ids failed once, per key
	track   string            // id prefix counted by Tracked
	tracked int64

	requests, ok, unique, fails, held, badSig, unknown, badReq atomic.Int64

	bufs sync.Pool
}

// SinkOption configures a Sink.
type SinkOption func(*Sink)

// WithSchedule sets the outage schedule, relative to the sink's start.
func WithSchedule(w []Window) SinkOption { return func(s *Sink) { s.schedule = w } }

// WithHoldLimit bounds how long a blackhole holds a request (default 2 min),
// so a sender without a timeout cannot hang the sink forever.
func WithHoldLimit(d time.Duration) SinkOption { return func(s *Sink) { s.holdMax = d } }

// WithDefault sets the behavior of paths that were not registered. Without
// it, such requests get 404 and count as unknown.
func WithDefault(b Behavior) SinkOption {
	return func(s *Sink) { s.fallback = b; s.acceptAll = true }
}

// WithFailFirstFraction makes this fraction of unregistered paths (chosen
// by a stable hash of the path) fail the first request of every event.
func WithFailFirstFraction(f float64) SinkOption { return func(s *Sink) { s.ffFraction = f } }

// NewSink returns a sink.
func NewSink(opts ...SinkOption) (*Sink, error) {
	s := &Sink{
		start:     time.Now(),
		holdMax:   2 * time.Minute,
		endpoints: map[string]*sinkEndpoint{},
		seen:      map[string]uint32{},
		failed:    map[string]bool{},
	}
	s.bufs.New = func() any { return new(bytes.Buffer) }
	for _, o := range opts {
		o(s)
	}
	if s.acceptAll && s.fallback.Secret != "" {
		v, err := verify.NewVerifier(sign.Standard, []string{s.fallback.Secret})
		if err != nil {
			return nil, err
		}
		s.fbVer = v
	}
	return s, nil
}

// Register sets the behavior of the endpoint at path key ("/e/17").
func (s *Sink) Register(key string, b Behavior) error {
	ep := &sinkEndpoint{key: key, b: b}
	if b.Secret != "" {
		v, err := verify.NewVerifier(sign.Standard, []string{b.Secret})
		if err != nil {
			return fmt.Errorf("sink %s: %w", key, err)
		}
		ep.verifier = v
	}
	s.mu.Lock()
	s.endpoints[key] = ep
	s.mu.Unlock()
	return nil
}

// Requests returns how many requests the endpoint at key has received, in
// any state, since it was registered.
func (s *Sink) Requests(key string) int64 {
	s.mu.RLock()
	ep := s.endpoints[key]
	s.mu.RUnlock()
	if ep == nil {
		return 0
	}
	return ep.requests.Load()
}

// Track makes Tracked count the distinct (event id, endpoint) pairs with
// this id prefix answered 2xx from now on.
func (s *Sink) Track(prefix string) {
	s.recMu.Lock()
	s.track, s.tracked = prefix, 0
	for k := range s.seen {
		if prefix != "" && strings.HasPrefix(k, prefix) {
			s.tracked++
		}
	}
	s.recMu.Unlock()
}

// Tracked is the number of distinct pairs answered 2xx whose id has the
// prefix given to Track.
func (s *Sink) Tracked() int64 {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return s.tracked
}

// Records returns a copy of the records whose event id has prefix ("" for
// all).
func (s *Sink) Records(prefix string) []Record {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	out := make([]Record, 0, len(s.records))
	for _, r := range s.records {
		if strings.HasPrefix(r.EventID, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// Reset forgets every record and counter (not the registered endpoints).
func (s *Sink) Reset() {
	s.recMu.Lock()
	s.records, s.seen, s.failed, s.tracked = nil, map[string]uint32{}, map[string]bool{}, 0
	s.recMu.Unlock()
	for _, c := range []*atomic.Int64{&s.requests, &s.ok, &s.unique, &s.fails, &s.held, &s.badSig, &s.unknown, &s.badReq} {
		c.Store(0)
	}
}

// Stats returns the counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{
		Requests: s.requests.Load(), OK: s.ok.Load(), Unique: s.unique.Load(), Failed: s.fails.Load(),
		Held: s.held.Load(), BadSignature: s.badSig.Load(), Unknown: s.unknown.Load(), BadRequest: s.badReq.Load(),
	}
}

// ServeHTTP receives webhooks on every path, except the control API:
//
//	PUT  /_sink/endpoints/<path...>  register a Behavior (JSON) for a path
//	GET  /_sink/stats                counters (JSON)
//	GET  /_sink/records?prefix=      records (JSON lines)
//	POST /_sink/reset                forget records and counters
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sink/") {
		s.control(w, r)
		return
	}
	s.requests.Add(1)
	s.mu.RLock()
	ep := s.endpoints[r.URL.Path]
	s.mu.RUnlock()
	b, ver := s.fallback, s.fbVer
	if ep != nil {
		ep.requests.Add(1)
		b, ver = ep.b, ep.verifier
	} else if s.acceptAll {
		if s.ffFraction > 0 && inFraction(r.URL.Path, s.ffFraction) {
			b.FailFirst = true
		}
	} else {
		s.unknown.Add(1)
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, verify.MaxBodyBytes))
		http.Error(w, "unknown endpoint", http.StatusNotFound)
		return
	}
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			s.bufs.Put(buf)
		}
	}()
	if r.ContentLength > 0 && r.ContentLength <= verify.MaxBodyBytes {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, verify.MaxBodyBytes))
	recv := time.Now()
	if err != nil {
		s.badReq.Add(1)
		http.Error(w, "body", http.StatusBadRequest)
		return
	}
	body := buf.Bytes()
	id := r.Header.Get(sign.HeaderID)
	rec := Record{EventID: id, Key: r.URL.Path, RecvNs: recv.UnixNano(), AcceptedMs: bodyTimestamp(body), Bytes: int32(len(body))}
	if a := r.Header.Get("Herald-Attempt"); a != "" {
		n, _ := strconv.Atoi(a)
		rec.Attempt = int32(n)
	}
	if ep != nil {
		rec.Key = ep.key // shared string, not one per request
	}

	since := recv.Sub(s.start)
	var win *Window
	for i := range s.schedule {
		if since >= s.schedule[i].From && since < s.schedule[i].To {
			win = &s.schedule[i]
			break
		}
	}
	if b.Blackhole || (win != nil && win.Hold) {
		s.held.Add(1)
		t := time.NewTimer(s.holdMax)
		defer t.Stop()
		select {
		case <-r.Context().Done():
		case <-t.C:
		}
		return // the client gave up; nothing to answer
	}
	if ver != nil {
		if err := ver.Verify(r.Header, body); err != nil {
			s.badSig.Add(1)
			rec.Status = http.StatusUnauthorized
			s.add(rec, false)
			http.Error(w, "signature", http.StatusUnauthorized)
			return
		}
	}
	if id == "" {
		s.badReq.Add(1)
		http.Error(w, "no webhook-id", http.StatusBadRequest)
		return
	}
	stall := b.Stall
	status := http.StatusOK
	switch {
	case win != nil && win.Status != 0:
		status = win.Status
	case win != nil && win.Stall > 0:
		stall = max(stall, win.Stall)
	}
	if status == http.StatusOK && b.FailRate > 0 && rand.Float64() < b.FailRate {
		status = http.StatusInternalServerError
	}
	if status == http.StatusOK && b.FailFirst && s.firstTime(id, rec.Key) {
		status = http.StatusInternalServerError
	}
	if stall > 0 {
		t := time.NewTimer(stall)
		select {
		case <-r.Context().Done():
			// The sender gave up (or stopped) before the answer: recorded,
			// never answered, so that a request sent again shows as a
			// second request of the pair.
			t.Stop()
			rec.Status = StatusClientGone
			s.add(rec, false)
			return
		case <-t.C:
		}
	}
	rec.Status = int32(status)
	ok := status >= 200 && status < 300
	if !ok {
		s.fails.Add(1)
	}
	s.add(rec, ok)
	w.WriteHeader(status)
}

// firstTime reports whether this is the first request for id at key,
// remembering it.
func (s *Sink) firstTime(id, key string) bool {
	k := id + "\x00" + key
	s.recMu.Lock()
	defer s.recMu.Unlock()
	if s.failed[k] {
		return false
	}
	s.failed[k] = true
	return true
}

func (s *Sink) add(rec Record, ok bool) {
	s.recMu.Lock()
	s.records = append(s.records, rec)
	if ok {
		k := rec.EventID + "\x00" + rec.Key
		n := s.seen[k]
		s.seen[k] = n + 1
		if n == 0 {
			s.unique.Add(1)
			if s.track != "" && strings.HasPrefix(rec.EventID, s.track) {
				s.tracked++
			}
		}
	}
	s.recMu.Unlock()
	if ok {
		s.ok.Add(1)
	}
}

var tsKey = []byte(`"timestamp":"`)

// bodyTimestamp reads the Standard Webhooks envelope's "timestamp" (the
// event's accepted time) without decoding the body: it is near the start.
func bodyTimestamp(body []byte) int64 {
	head := body[:min(len(body), 512)]
	i := bytes.Index(head, tsKey)
	if i < 0 {
		return 0
	}
	rest := head[i+len(tsKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	if err != nil {
		return 0
	}
	return t.UnixMilli()
}

func (s *Sink) control(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/_sink/endpoints/"):
		key := "/" + strings.TrimPrefix(r.URL.Path, "/_sink/endpoints/")
		var b Behavior
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.Register(key, b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/_sink/stats":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	case r.Method == http.MethodGet && r.URL.Path == "/_sink/records":
		w.Header().Set("Content-Type", "application/x-ndjson")
		_ = WriteRecords(w, s.Records(r.URL.Query().Get("prefix")))
	case r.Method == http.MethodPost && r.URL.Path == "/_sink/reset":
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// WriteRecords writes records as JSON lines.
func WriteRecords(w io.Writer, recs []Record) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// SinkLatency summarizes the latency of the 2xx records from the body's
// accepted timestamp to receipt: what a sink on its own can tell, at
// millisecond resolution. (The runner measures from the producer's 202
// instead, on the same clock.)
func SinkLatency(recs []Record) Percentiles {
	var h Histogram
	for _, r := range recs {
		if r.OK() && r.AcceptedMs > 0 {
			h.Record(time.Duration(r.RecvNs - r.AcceptedMs*1e6))
		}
	}
	return h.Summary()
}

// inFraction reports whether key falls in the given fraction of all keys,
// by a stable hash: the same keys are chosen on every run.
func inFraction(key string, fraction float64) bool {
	f := fnv.New64a()
	_, _ = f.Write([]byte(key))
	return float64(f.Sum64()%10000) < fraction*10000
}
