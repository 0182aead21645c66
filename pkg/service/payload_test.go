package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/verify"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// The large-payload tests run the whole pipeline in process (service.Run:
// API, router, sender) against a real NATS server with its default 1 MiB
// max_payload, and deliver to real HTTP receivers.

const (
	plAdmin   = "adm_payload_test_token_0123456789"
	plMaxData = 5 << 20 // the default HERALD_MAX_EVENT_BYTES
)

type plEnv struct {
	base string
	nc   *nats.Conn
	js   jetstream.JetStream
}

func plStart(t *testing.T) *plEnv {
	t.Helper()
	url := testenv.NATS(t)
	sched, err := retry.Parse("1s,1s")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := service.FromEnv(service.Config{
		Roles:              service.Roles{API: true, Router: true, Sender: true},
		NATSURL:            url,
		RedisURL:           "redis://127.0.0.1:1", // none: the in-process cache (unless REDIS_URL is set)
		RedisPrefix:        fmt.Sprintf("herald-pltest-%d:", time.Now().UnixNano()),
		RedisOptional:      true,
		HTTPAddr:           "127.0.0.1:0",
		AdminToken:         plAdmin,
		Schedule:           sched,
		AckWait:            5 * time.Second,
		EgressAllowPrivate: true,
		LogLevel:           "warn",
		EncryptionKey:      testEncryptionKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxEventBytes != plMaxData {
		t.Fatalf("default HERALD_MAX_EVENT_BYTES %d, want %d", cfg.MaxEventBytes, plMaxData)
	}
	info, _ := testenv.Serve(t, func(ctx context.Context, ready func(service.Info)) error {
		return service.Run(ctx, cfg, testenv.Logger(t), ready)
	})
	e := &plEnv{base: "http://" + info.HTTPAddr}
	if e.nc, err = nats.Connect(url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	if mp := e.nc.MaxPayload(); mp > 1<<20 {
		t.Fatalf("the server's max_payload is %d; these tests are about the 1 MiB default", mp)
	}
	e.js, _ = jetstream.New(e.nc)
	return e
}

func plCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *plEnv) do(t *testing.T, method, path, auth string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *plEnv) must(t *testing.T, want int, method, path, auth string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	status, out := e.do(t, method, path, auth, b)
	if status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, out)
	}
	var v map[string]any
	_ = json.Unmarshal(out, &v)
	return v
}

// tenant returns a new tenant's id and API key.
func (e *plEnv) tenant(t *testing.T) (string, string) {
	v := e.must(t, 201, "POST", "/v1/tenants", plAdmin, map[string]any{"name": t.Name()})
	return v["id"].(string), v["api_key"].(string)
}

// endpoint creates an endpoint for rcv and returns its id; rcv learns its
// secret.
func (e *plEnv) endpoint(t *testing.T, key string, rcv *plReceiver, extra map[string]any) string {
	body := map[string]any{"name": "hook", "url": rcv.URL + "/hook", "events": []string{"report.*", "ping"}}
	for k, v := range extra {
		body[k] = v
	}
	v := e.must(t, 201, "POST", "/v1/endpoints", key, body)
	rcv.secret = v["secret"].(string)
	return v["id"].(string)
}

// post sends an event as a producer should: a 503 from a busy intake (the
// subtests run in parallel, and large bodies share one byte budget) is
// retried with the same id after its Retry-After, for at most 30 s.
func (e *plEnv) post(t *testing.T, key, id, typ string, data []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, out := e.do(t, "POST", "/v1/events", key, eventBody(id, typ, data))
		if status == http.StatusAccepted {
			return
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST /v1/events %s: %d %s", id, status, out)
		}
		time.Sleep(time.Second) // the intake's Retry-After: the behaviour a producer owes it
	}
}

func eventBody(id, typ string, data []byte) []byte {
	b := []byte(`{"id":` + strconv.Quote(id) + `,"type":` + strconv.Quote(typ) + `,"data":`)
	b = append(b, data...)
	return append(b, '}')
}

// objects lists the payload objects stored under tenant.
func (e *plEnv) objects(t *testing.T, tenant string) []string {
	t.Helper()
	obs, err := e.js.ObjectStore(plCtx(t), bus.PayloadBucket)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := obs.List(plCtx(t))
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		if strings.HasPrefix(i.Name, tenant+"/") && !i.Deleted {
			out = append(out, i.Name)
		}
	}
	return out
}

// count counts the messages of stream on subject.
func (e *plEnv) count(t *testing.T, stream, subject string) uint64 {
	t.Helper()
	st, err := e.js.Stream(plCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(plCtx(t), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func (e *plEnv) deadLetters(t *testing.T, tenant string) []*heraldv1.DeadLetter {
	t.Helper()
	st, err := e.js.Stream(plCtx(t), bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	var out []*heraldv1.DeadLetter
	info, _ := st.Info(plCtx(t))
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(plCtx(t), seq)
		if err != nil || !strings.HasPrefix(m.Subject, bus.DLQPrefix+tenant+".") {
			continue
		}
		dl := &heraldv1.DeadLetter{}
		if proto.Unmarshal(m.Data, dl) == nil {
			out = append(out, dl)
		}
	}
	return out
}

// metric returns the value of one sample on /metrics (0 if absent).
func (e *plEnv) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := http.Get(e.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// plReceiver records deliveries, verifies their signatures, and numbers
// them in order of arrival.
type plReceiver struct {
	*httptest.Server
	secret string

	// order numbers 2xx deliveries in order of arrival; receivers may
	// share one.
	order *atomic.Int64

	mu     sync.Mutex
	status int
	got    map[string]plDelivery // webhook-id -> first 2xx delivery
	bad    []string
}

type plDelivery struct {
	body []byte
	seq  int64
}

func newPLReceiver(t *testing.T) *plReceiver {
	r := &plReceiver{status: http.StatusOK, got: map[string]plDelivery{}, order: new(atomic.Int64)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id := req.Header.Get(sign.HeaderID)
		verr := verify.Verify(sign.Standard, req.Header, body, []string{r.secret})
		r.mu.Lock()
		defer r.mu.Unlock()
		if verr != nil {
			r.bad = append(r.bad, fmt.Sprintf("%s: %v", id, verr))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.status >= 300 {
			w.WriteHeader(r.status)
			return
		}
		if _, ok := r.got[id]; !ok {
			r.got[id] = plDelivery{body: body, seq: r.order.Add(1)}
		}
		w.WriteHeader(r.status)
	}))
	t.Cleanup(r.Close)
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, b := range r.bad {
			t.Errorf("receiver: bad signature: %s", b)
		}
	})
	return r
}

func (r *plReceiver) setStatus(s int) {
	r.mu.Lock()
	r.status = s
	r.mu.Unlock()
}

func (r *plReceiver) delivery(id string) (plDelivery, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.got[id]
	return d, ok
}

func (r *plReceiver) wait(t *testing.T, within time.Duration, ids ...string) {
	t.Helper()
	testenv.Eventually(t, within, func() bool {
		for _, id := range ids {
			if _, ok := r.delivery(id); !ok {
				return false
			}
		}
		return true
	}, "deliveries of %v", ids)
}

// bigData returns a JSON object of exactly n bytes: hex of random bytes
// (which compression halves) with a little structure around it.
func bigData(t *testing.T, n int) []byte {
	t.Helper()
	head, tail := `{"kind":"report","rows":[1,2,3],"blob":"`, `"}`
	raw := make([]byte, (n-len(head)-len(tail)+1)/2)
	_, _ = rand.Read(raw)
	b := append([]byte(head), hex.EncodeToString(raw)[:n-len(head)-len(tail)]...)
	return append(b, tail...)
}

// checkEnvelope checks a Standard Webhooks body carries data byte for byte.
func checkEnvelope(t *testing.T, body []byte, typ string, data []byte) {
	t.Helper()
	prefix := []byte(`{"type":` + strconv.Quote(typ) + `,"timestamp":"`)
	suffix := append(append([]byte(`","data":`), data...), '}')
	if !bytes.HasPrefix(body, prefix) || !bytes.HasSuffix(body, suffix) || len(body) > len(prefix)+len(suffix)+40 {
		t.Fatalf("delivered body (%d bytes) is not the envelope of the %d bytes sent", len(body), len(data))
	}
}

func TestLargePayloads(t *testing.T) {
	e := plStart(t)

	// Not parallel, so that the payload store metrics count this alone.
	t.Run("FanoutReadsTheBodyOnce", func(t *testing.T) {
		tn, key := e.tenant(t)
		rcvs := make([]*plReceiver, 10)
		for i := range rcvs {
			rcvs[i] = newPLReceiver(t)
			e.endpoint(t, key, rcvs[i], nil)
		}
		data := bigData(t, 2<<20)
		// Stored by a producer (the NATS protocol): this process has never
		// seen it, so exactly one read fills its cache.
		objKey := tn + "/fanout-1"
		putObject(t, e, objKey, data)
		before := e.metric(t, `herald_payload_gets_total{source="store"}`)
		publishRef(t, e, tn, "report.ready", "fanout-1", objKey)
		for _, r := range rcvs {
			r.wait(t, 30*time.Second, "fanout-1")
			d, _ := r.delivery("fanout-1")
			checkEnvelope(t, d.body, "report.ready", data)
		}
		if reads := e.metric(t, `herald_payload_gets_total{source="store"}`) - before; reads != 1 {
			t.Fatalf("%v object store reads for one body delivered to 10 endpoints, want 1", reads)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.objects(t, tn)) == 0 },
			"body kept after every job was delivered")
	})

	t.Run("HTTP5MiB", func(t *testing.T) {
		t.Parallel()
		tn, key := e.tenant(t)
		env, raw := newPLReceiver(t), newPLReceiver(t)
		e.endpoint(t, key, env, nil)
		e.endpoint(t, key, raw, map[string]any{"payload_format": "raw"})
		data := bigData(t, plMaxData)
		e.post(t, key, "big-http", "report.ready", data)
		env.wait(t, 30*time.Second, "big-http")
		raw.wait(t, 30*time.Second, "big-http")
		d, _ := env.delivery("big-http")
		checkEnvelope(t, d.body, "report.ready", data)
		if d, _ := raw.delivery("big-http"); !bytes.Equal(d.body, data) {
			t.Fatalf("raw delivery differs from the data sent (%d bytes, want %d)", len(d.body), len(data))
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.objects(t, tn)) == 0 },
			"body kept after every job was delivered")
	})

	t.Run("NATS5MiB", func(t *testing.T) {
		t.Parallel()
		tn, key := e.tenant(t)
		rcv := newPLReceiver(t)
		e.endpoint(t, key, rcv, nil)
		data := bigData(t, plMaxData)
		// Too large for one NATS message: a plain publish is refused.
		if err := e.nc.Publish(bus.EventSubject(tn, "report.ready"), eventBody("x", "report.ready", data)); !errors.Is(err, nats.ErrMaxPayload) {
			t.Fatalf("publish of %d bytes: %v, want nats.ErrMaxPayload", len(data), err)
		}
		objKey := tn + "/reports/2026-11/big-nats.json"
		putObject(t, e, objKey, data)
		publishRef(t, e, tn, "report.ready", "big-nats", objKey)
		rcv.wait(t, 30*time.Second, "big-nats")
		d, _ := rcv.delivery("big-nats")
		checkEnvelope(t, d.body, "report.ready", data)
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.objects(t, tn)) == 0 },
			"producer's body kept after its only job was delivered")

		// Another tenant's key is refused: nothing is delivered.
		other, _ := e.tenant(t)
		theirs := other + "/secret.json"
		putObject(t, e, theirs, []byte(`{"secret":true}`))
		publishRef(t, e, tn, "report.ready", "stolen", theirs)
		publishRef(t, e, tn, "report.ready", "after-stolen", objKey+".missing")
		testenv.Eventually(t, 30*time.Second, func() bool {
			c, err := e.js.Consumer(plCtx(t), bus.StreamEvents, bus.ConsumerRouter)
			if err != nil {
				return false
			}
			i, err := c.Info(plCtx(t))
			return err == nil && i.NumPending == 0 && i.NumAckPending == 0 &&
				e.count(t, bus.StreamDeliveries, bus.DeliveriesPrefix+tn+".>") == 0
		}, "events not all routed")
		for _, id := range []string{"stolen", "after-stolen"} {
			if _, ok := rcv.delivery(id); ok {
				t.Fatalf("event %s with an invalid Herald-Payload-Ref was delivered", id)
			}
		}
		if len(e.objects(t, other)) != 1 {
			t.Fatal("the other tenant's object was touched")
		}
	})

	// GET /v1/events/{id} shows a large event's data, read from the
	// payload store, for as long as a delivery still needs the body (here
	// a dead letter, kept for its replay); once every endpoint was
	// delivered and the body released, data is null, as documented.
	t.Run("EventShowsLargeData", func(t *testing.T) {
		t.Parallel()
		tn, key := e.tenant(t)
		failing := newPLReceiver(t)
		failing.setStatus(http.StatusInternalServerError)
		e.endpoint(t, key, failing, map[string]any{"max_attempts": 1})
		data := bigData(t, 200<<10) // above the 64 KiB inline threshold
		e.post(t, key, "big-dead", "report.ready", data)
		testenv.Eventually(t, 30*time.Second, func() bool { return len(e.deadLetters(t, tn)) == 1 },
			"the failing endpoint's event was not dead-lettered")
		// The history projects the event after it was stored: wait until
		// GET knows it (its accepted_at set), then read its data.
		eventData := func(key, id string) json.RawMessage {
			t.Helper()
			var v struct {
				AcceptedAt *time.Time      `json:"accepted_at"`
				Data       json.RawMessage `json:"data"`
			}
			var status int
			var out []byte
			testenv.Eventually(t, 10*time.Second, func() bool {
				v.AcceptedAt = nil
				status, out = e.do(t, "GET", "/v1/events/"+id, key, nil)
				return status == http.StatusOK && json.Unmarshal(out, &v) == nil && v.AcceptedAt != nil
			}, "%s", testenv.Lazy(func() string { return fmt.Sprintf("GET /v1/events/%s: %d %.200s", id, status, out) }))
			return v.Data
		}
		if got := eventData(key, "big-dead"); !bytes.Equal(got, data) {
			t.Fatalf("GET /v1/events/big-dead shows %d bytes of data (%.40q), want the %d sent", len(got), got, len(data))
		}
		if len(e.objects(t, tn)) != 1 {
			t.Fatal("reading the event's data changed the payload store")
		}

		tn2, key2 := e.tenant(t)
		ok := newPLReceiver(t)
		e.endpoint(t, key2, ok, nil)
		e.post(t, key2, "big-done", "report.ready", data)
		ok.wait(t, 30*time.Second, "big-done")
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.objects(t, tn2)) == 0 },
			"body kept after its only job was delivered")
		if got := eventData(key2, "big-done"); string(got) != "null" {
			t.Fatalf("GET /v1/events/big-done after its body was released shows %.40q, want null", got)
		}
	})

	t.Run("TooLargeStoresNothing", func(t *testing.T) {
		t.Parallel()
		tn, key := e.tenant(t)
		for _, body := range [][]byte{
			eventBody("too-big-1", "report.ready", bigData(t, plMaxData+1)),       // data over the limit
			eventBody("too-big-2", "report.ready", bigData(t, plMaxData+200<<10)), // body over limit + 64 KiB
		} {
			status, out := e.do(t, "POST", "/v1/events", key, body)
			// Parallel subtests fill the intake's byte budget: a producer
			// is told to come back (503 busy, Retry-After: 1) before its
			// body is judged.
			for tries := 0; status == http.StatusServiceUnavailable && bytes.Contains(out, []byte("/problems/busy")) && tries < 30; tries++ {
				time.Sleep(time.Second) // the busy answer's Retry-After
				status, out = e.do(t, "POST", "/v1/events", key, body)
			}
			var p struct {
				Status int   `json:"status"`
				Limit  int64 `json:"limit"`
			}
			_ = json.Unmarshal(out, &p)
			if status != http.StatusRequestEntityTooLarge || p.Status != 413 || p.Limit != plMaxData {
				t.Fatalf("%d bytes: %d %s; want 413 with limit %d", len(body), status, out, plMaxData)
			}
		}
		if n := e.count(t, bus.StreamEvents, bus.EventsPrefix+tn+".>"); n != 0 {
			t.Fatalf("EVENTS holds %d events of the tenant", n)
		}
		if objs := e.objects(t, tn); len(objs) != 0 {
			t.Fatalf("object store holds %v", objs)
		}
	})

	t.Run("KeptWhileDeadLetteredRemovedAfterReplay", func(t *testing.T) {
		t.Parallel()
		tn, key := e.tenant(t)
		ok, dead := newPLReceiver(t), newPLReceiver(t)
		e.endpoint(t, key, ok, nil)
		dead.setStatus(http.StatusInternalServerError)
		deadEP := e.endpoint(t, key, dead, map[string]any{"max_attempts": 1})
		data := bigData(t, 300<<10)
		e.post(t, key, "kept", "report.ready", data)
		ok.wait(t, 30*time.Second, "kept")
		var dls []*heraldv1.DeadLetter
		testenv.Eventually(t, 30*time.Second, func() bool { dls = e.deadLetters(t, tn); return len(dls) == 1 }, "no dead letter")
		if objs := e.objects(t, tn); len(objs) != 1 {
			t.Fatalf("objects %v while a job is dead-lettered; want the body kept", objs)
		}
		job := dls[0].Job
		if job.Event.PayloadRef == nil || len(job.Event.Data) != 0 || job.EndpointId != deadEP {
			t.Fatalf("dead-lettered job %v: want the body by reference", job)
		}

		// Replayed (as the DLQ replay publishes it) to a receiver that
		// recovered: delivered intact, and then the body is removed.
		dead.setStatus(http.StatusOK)
		replay := func(id string) {
			j := proto.Clone(job).(*heraldv1.DeliveryJob)
			j.ReplayId, j.PriorAttempts = id, 0
			b, _ := proto.Marshal(j)
			if _, err := e.js.PublishMsg(plCtx(t), &nats.Msg{Subject: bus.DeliverySubject(tn, deadEP), Data: b},
				jetstream.WithMsgID(job.Id+":"+id)); err != nil {
				t.Fatal(err)
			}
		}
		replay("rpl_1")
		dead.wait(t, 30*time.Second, "kept")
		d, _ := dead.delivery("kept")
		checkEnvelope(t, d.body, "report.ready", data)
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.objects(t, tn)) == 0 },
			"body kept after the replayed job was delivered")

		// A replay after the body is gone fails clearly: dead-lettered at
		// once with the reason, not retried and not delivered empty.
		dead.setStatus(http.StatusInternalServerError)
		replay("rpl_2")
		testenv.Eventually(t, 30*time.Second, func() bool { dls = e.deadLetters(t, tn); return len(dls) == 2 }, "replay of a removed body not dead-lettered")
		if r := dls[1].Reason; !strings.Contains(r, "no longer stored") || dls[1].Attempts[0].ErrorClass != "payload" {
			t.Fatalf("dead letter reason %q, class %q", r, dls[1].Attempts[0].ErrorClass)
		}
	})

	t.Run("ResendCountsItsJobs", func(t *testing.T) {
		t.Parallel()
		tn, key := e.tenant(t)
		ok, dead := newPLReceiver(t), newPLReceiver(t)
		e.endpoint(t, key, ok, nil)
		dead.setStatus(http.StatusInternalServerError)
		e.endpoint(t, key, dead, map[string]any{"max_attempts": 1})
		data := bigData(t, 300<<10)
		e.post(t, key, "resent", "report.ready", data)
		ok.wait(t, 30*time.Second, "resent")
		testenv.Eventually(t, 30*time.Second, func() bool { return len(e.deadLetters(t, tn)) == 1 }, "no dead letter")

		// A resend to a new endpoint: its job counts, so its delivery does
		// not remove the body the dead letter still needs.
		late := newPLReceiver(t)
		lateEP := e.endpoint(t, key, late, nil)
		e.must(t, http.StatusAccepted, "POST", "/v1/events/resent/resend", key, map[string]any{"endpoint_id": lateEP})
		late.wait(t, 30*time.Second, "resent")
		d, _ := late.delivery("resent")
		checkEnvelope(t, d.body, "report.ready", data)
		if objs := e.objects(t, tn); len(objs) != 1 {
			t.Fatalf("objects %v after the resend was delivered; the dead letter still needs the body", objs)
		}

		// Once every job that needed it ended, a resend says the body is gone.
		tn2, key2 := e.tenant(t)
		all := newPLReceiver(t)
		e.endpoint(t, key2, all, nil)
		e.post(t, key2, "gone", "report.ready", data)
		all.wait(t, 30*time.Second, "gone")
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.objects(t, tn2)) == 0 }, "body kept after its last delivery")
		e.must(t, http.StatusGone, "POST", "/v1/events/gone/resend", key2, nil)
	})

	t.Run("BurstOfLargeEventsDoesNotStopSmallOnes", func(t *testing.T) {
		t.Parallel()
		// Large events to one endpoint, small ones to another (an
		// endpoint's own concurrency cap would queue its small events
		// behind its large ones, by design), numbered on one clock.
		tn, key := e.tenant(t)
		rcv, smallRcv := newPLReceiver(t), newPLReceiver(t)
		smallRcv.order = rcv.order
		e.endpoint(t, key, rcv, map[string]any{"events": []string{"report.*"}})
		e.endpoint(t, key, smallRcv, map[string]any{"events": []string{"ping"}})
		const large, small = 20, 5
		data := bigData(t, plMaxData)
		var wg sync.WaitGroup
		started := make(chan struct{}, large)
		var larges, smalls []string
		for i := range large {
			id := fmt.Sprintf("large-%d", i)
			larges = append(larges, id)
			wg.Go(func() {
				started <- struct{}{}
				status, out := e.do(t, "POST", "/v1/events", key, eventBody(id, "report.ready", data))
				// Intake holds 64 MiB of bodies at a time: the rest of the
				// burst is told to come back (Retry-After: 1), as clients do;
				// on a loaded machine a store can also time out (503, "retry
				// with the same id"), which a client retries the same way.
				for tries := 0; status == http.StatusServiceUnavailable && tries < 30; tries++ {
					time.Sleep(time.Second) // the busy answer's Retry-After
					status, out = e.do(t, "POST", "/v1/events", key, eventBody(id, "report.ready", data))
				}
				if status != http.StatusAccepted {
					t.Errorf("%s: %d %s", id, status, out)
				}
			})
		}
		<-started // the burst is on its way: now the small events
		for i := range small {
			id := fmt.Sprintf("small-%d", i)
			smalls = append(smalls, id)
			wg.Go(func() {
				status, out := e.do(t, "POST", "/v1/events", key, eventBody(id, "ping", []byte(`{"n":`+strconv.Itoa(i)+`}`)))
				if status != http.StatusAccepted {
					t.Errorf("%s: %d %s", id, status, out)
				}
			})
		}
		wg.Wait()
		rcv.wait(t, 60*time.Second, larges...)
		smallRcv.wait(t, 60*time.Second, smalls...)
		var lastLarge, lastSmall int64
		for _, id := range larges {
			d, _ := rcv.delivery(id)
			lastLarge = max(lastLarge, d.seq)
		}
		for _, id := range smalls {
			d, _ := smallRcv.delivery(id)
			lastSmall = max(lastSmall, d.seq)
		}
		t.Logf("the last small event arrived %dth, the last large one %dth, of %d", lastSmall, lastLarge, large+small)
		if lastSmall > lastLarge {
			t.Fatalf("the last small event arrived after every large one: small events waited for the burst")
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.objects(t, tn)) == 0 },
			"bodies kept after every job was delivered")
	})
}

// putObject stores a body as a producer does: straight into the bucket.
func putObject(t *testing.T, e *plEnv, key string, data []byte) {
	t.Helper()
	obs, err := e.js.ObjectStore(plCtx(t), bus.PayloadBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Put(plCtx(t), jetstream.ObjectMeta{Name: key}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// publishRef publishes a producer's event whose data is the object key.
func publishRef(t *testing.T, e *plEnv, tenant, typ, id, key string) {
	t.Helper()
	m := nats.NewMsg(bus.EventSubject(tenant, typ))
	m.Header.Set(bus.HeaderPayloadRef, key)
	m.Header.Set(nats.MsgIdHdr, id)
	m.Data = []byte(`{"id":` + strconv.Quote(id) + `}`)
	if _, err := e.js.PublishMsg(plCtx(t), m); err != nil {
		t.Fatal(err)
	}
}
