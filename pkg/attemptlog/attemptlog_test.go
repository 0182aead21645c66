package attemptlog_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/attemptlog"
	"github.com/heraldhq/herald/pkg/bus"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

func setup(t *testing.T) (context.Context, jetstream.JetStream, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	js := testenv.JetStream(t)
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	// A tenant of its own: NATS_URL may name a server other tests share.
	return ctx, js, fmt.Sprintf("t%d", time.Now().UnixNano())
}

func rec(tenant, endpoint string, n int) *heraldv1.Attempt {
	return &heraldv1.Attempt{TenantId: tenant, EndpointId: endpoint, EventId: fmt.Sprintf("evt_%d", n), Number: 1,
		StatusCode: 200, ErrorClass: "none", RequestHeaders: map[string]string{"webhook-id": fmt.Sprintf("msg_%d", n)}}
}

// stored reads every ATTEMPTS message of one endpoint: the records of
// each, and whether it was a batch.
func stored(ctx context.Context, t *testing.T, js jetstream.JetStream, tenant, endpoint string) (msgs [][]*heraldv1.Attempt, batch []bool) {
	t.Helper()
	subject := bus.AttemptSubject(tenant, endpoint)
	st, err := js.Stream(ctx, bus.StreamAttempts)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.State.Subjects[subject])
	if n == 0 {
		return nil, nil
	}
	c, err := js.OrderedConsumer(ctx, bus.StreamAttempts, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := attemptlog.Decode(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, recs)
		batch = append(batch, m.Headers().Get(bus.HeaderEncoding) == attemptlog.EncodingBatch)
	}
	return msgs, batch
}

func sizes(msgs [][]*heraldv1.Attempt) []int {
	var out []int
	for _, m := range msgs {
		out = append(out, len(m))
	}
	return out
}

// Records wait for their endpoint's batch; the then functions (a job's
// ack) run only once their record was published, never before.
func TestRecordsShareAMessagePerEndpoint(t *testing.T) {
	ctx, js, tenant := setup(t)
	l := attemptlog.New(js.Conn(), attemptlog.WithLinger(time.Hour))
	var acked atomic.Int32
	ack := func() { acked.Add(1) }
	for i := range 5 {
		l.Record(rec(tenant, "ep_a", i), ack)
	}
	for i := range 3 {
		l.Record(rec(tenant, "ep_b", 10+i), ack)
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if n := acked.Load(); n != 0 {
		t.Fatalf("%d acks ran before their records were published", n)
	}
	if msgs, _ := stored(ctx, t, js, tenant, "ep_a"); len(msgs) != 0 {
		t.Fatalf("records published before the linger or a flush: %v", sizes(msgs))
	}
	l.Flush()
	if n := acked.Load(); n != 8 {
		t.Fatalf("acks after Flush = %d, want 8", n)
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		a, _ := stored(ctx, t, js, tenant, "ep_a")
		b, _ := stored(ctx, t, js, tenant, "ep_b")
		return len(a) == 1 && len(b) == 1
	})
	a, batch := stored(ctx, t, js, tenant, "ep_a")
	if len(a[0]) != 5 || !batch[0] {
		t.Fatalf("ep_a: %d records (batch %v), want one batch of 5", len(a[0]), batch[0])
	}
	for i, r := range a[0] {
		if want := fmt.Sprintf("evt_%d", i); r.EventId != want || r.RequestHeaders["webhook-id"] != fmt.Sprintf("msg_%d", i) {
			t.Fatalf("record %d = %s %v, want %s in order, whole", i, r.EventId, r.RequestHeaders, want)
		}
	}
	if b, _ := stored(ctx, t, js, tenant, "ep_b"); len(b[0]) != 3 {
		t.Fatalf("ep_b: %d records, want 3", len(b[0]))
	}
}

// A full batch goes at once; a lone record is stored as a bare Attempt,
// as before batches, and RecordNow takes the endpoint's batch with it.
func TestLimitsAndRecordNow(t *testing.T) {
	ctx, js, tenant := setup(t)
	l := attemptlog.New(js.Conn(), attemptlog.WithLinger(time.Hour), attemptlog.WithLimits(2, 1<<20))
	for i := range 5 {
		l.Record(rec(tenant, "ep_c", i), nil)
	}
	l.Flush()
	l.Record(rec(tenant, "ep_d", 0), nil)
	l.RecordNow(rec(tenant, "ep_d", 1))
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		c, _ := stored(ctx, t, js, tenant, "ep_c")
		d, _ := stored(ctx, t, js, tenant, "ep_d")
		return len(c) == 3 && len(d) == 1
	})
	c, batch := stored(ctx, t, js, tenant, "ep_c")
	if got := fmt.Sprint(sizes(c), batch); got != "[2 2 1] [true true false]" {
		t.Fatalf("ep_c messages (records, batch) = %s, want [2 2 1] [true true false]", got)
	}
	if d, _ := stored(ctx, t, js, tenant, "ep_d"); fmt.Sprint(sizes(d)) != "[2]" {
		t.Fatalf("ep_d messages = %v, want one of 2", sizes(d))
	}
}

// With the default linger a record, and its ack, go by themselves soon.
func TestLingerPublishes(t *testing.T) {
	ctx, js, tenant := setup(t)
	l := attemptlog.New(js.Conn())
	var acked atomic.Bool
	l.Record(rec(tenant, "ep_e", 0), func() { acked.Store(true) })
	testenv.Eventually(t, 10*time.Second, acked.Load)
	testenv.Eventually(t, 10*time.Second, func() bool {
		m, _ := stored(ctx, t, js, tenant, "ep_e")
		return len(m) == 1
	})
}

// Records, lingers and flushes from many goroutines at once: every record
// is stored once and every ack runs once (run with -race).
func TestConcurrentRecordsAndFlushes(t *testing.T) {
	ctx, js, tenant := setup(t)
	l := attemptlog.New(js.Conn(), attemptlog.WithLinger(time.Millisecond), attemptlog.WithLimits(16, 1<<20))
	const workers, each = 8, 200
	var acked atomic.Int32
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				l.Flush()
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := w*each + i
				a := rec(tenant, fmt.Sprintf("ep_%d", n%4), n)
				if n%10 == 0 {
					l.RecordNow(a)
					acked.Add(1)
					continue
				}
				l.Record(a, func() { acked.Add(1) })
			}
		}()
	}
	wg.Wait()
	close(stop)
	l.Flush()
	if n := acked.Load(); n != workers*each {
		t.Fatalf("%d acks ran, want %d", n, workers*each)
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	testenv.Eventually(t, 10*time.Second, func() bool {
		clear(seen)
		total := 0
		for e := range 4 {
			msgs, _ := stored(ctx, t, js, tenant, fmt.Sprintf("ep_%d", e))
			for _, m := range msgs {
				for _, r := range m {
					seen[r.EventId]++
					total++
				}
			}
		}
		return total >= workers*each
	})
	if len(seen) != workers*each {
		t.Fatalf("%d distinct records stored, want %d", len(seen), workers*each)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("record %s stored %d times", id, c)
		}
	}
}
