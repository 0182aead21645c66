package payload

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func connect(t *testing.T) jetstream.JetStream {
	t.Helper()
	js := testenv.JetStream(t)
	return js
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func open(t *testing.T, js jetstream.JetStream, cfg Config) *Store {
	t.Helper()
	cfg.Logger = testenv.Logger(t)
	s, err := Open(ctx(t), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// compressible is JSON that zstd shrinks a lot, as most event data is.
func compressible(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"rows":[`)
	for i := 0; b.Len() < n-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"customer %d","status":"active"}`, i, i%97)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func exists(t *testing.T, js jetstream.JetStream, key string) bool {
	t.Helper()
	obs, err := js.ObjectStore(ctx(t), bus.PayloadBucket)
	if err != nil {
		t.Fatal(err)
	}
	_, err = obs.GetInfo(ctx(t), key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func TestPutGetCompressesWhenItPays(t *testing.T) {
	js := connect(t)
	s := open(t, js, Config{})

	data := compressible(1 << 20)
	ref, err := s.Put(ctx(t), "tn_1", data)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Encoding != EncodingZstd || ref.Size != int64(len(data)) || ref.Bucket != bus.PayloadBucket || !strings.HasPrefix(ref.Key, "tn_1/") {
		t.Fatalf("ref %+v", ref)
	}
	obs, _ := js.ObjectStore(ctx(t), bus.PayloadBucket)
	info, err := obs.GetInfo(ctx(t), ref.Key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size*10 > uint64(len(data)) || info.Headers.Get(HeaderEncoding) != EncodingZstd {
		t.Fatalf("stored %d bytes (%q) for %d bytes of JSON; want it compressed", info.Size, info.Headers.Get(HeaderEncoding), len(data))
	}

	// A second process (a fresh Store: empty cache) reads it back.
	other := open(t, js, Config{})
	got, err := other.Get(ctx(t), ref)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip: %v, equal %v", err, bytes.Equal(got, data))
	}
	if st := other.Stats(); st.Reads != 1 {
		t.Fatalf("stats %+v, want one read", st)
	}

	// Data that compression would not shrink by 10 % is stored as is.
	raw := make([]byte, 512<<10)
	_, _ = rand.Read(raw)
	if b, enc := s.compress(raw); enc != EncodingIdentity || !bytes.Equal(b, raw) {
		t.Fatalf("random bytes: encoding %q; want them stored as is", enc)
	}
	noisy := []byte(`["` + hex.EncodeToString(raw[:100<<10]) + `"]`) // hex: compresses ~50 %
	noisy = append(noisy[:0:0], noisy...)
	ref2, err := s.Put(ctx(t), "tn_1", noisy)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := other.Get(ctx(t), ref2); err != nil || !bytes.Equal(got, noisy) {
		t.Fatalf("round trip 2 (%s): %v", ref2.Encoding, err)
	}
	random := []byte(`"` + string(raw[:200<<10]) + `"`) // not JSON, but Put stores any bytes
	ref3, err := s.Put(ctx(t), "tn_1", random)
	if err != nil {
		t.Fatal(err)
	}
	if ref3.Encoding != EncodingIdentity {
		t.Fatalf("random bytes stored with encoding %q", ref3.Encoding)
	}
	if got, err := other.Get(ctx(t), ref3); err != nil || !bytes.Equal(got, random) {
		t.Fatalf("round trip 3: %v", err)
	}
}

func TestFanoutReadsOnce(t *testing.T) {
	js := connect(t)
	ing := open(t, js, Config{})
	ref, err := ing.Put(ctx(t), "tn_1", compressible(5<<20))
	if err != nil {
		t.Fatal(err)
	}
	// A sender process: 100 jobs of one event, all at once.
	snd := open(t, js, Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			b, err := snd.Get(ctx(t), ref)
			if err == nil && int64(len(b)) != ref.Size {
				err = fmt.Errorf("got %d bytes", len(b))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := snd.Stats()
	if st.Reads != 1 || st.Hits+st.Shared != 99 {
		t.Fatalf("stats %+v: want 1 object store read and 99 cache hits or shared reads", st)
	}
}

func TestCacheIsBoundedInBytes(t *testing.T) {
	c := newLRU(10)
	c.add("a", make([]byte, 4))
	c.add("b", make([]byte, 4))
	c.get("a") // a is now the most recent
	c.add("c", make([]byte, 4))
	if _, ok := c.get("b"); ok {
		t.Fatal("b should have been evicted (least recently used)")
	}
	if _, ok := c.get("a"); !ok {
		t.Fatal("a evicted")
	}
	c.add("huge", make([]byte, 11))
	if _, ok := c.get("huge"); ok || c.bytes() != 8 {
		t.Fatalf("an entry larger than the cache was kept (size %d)", c.bytes())
	}
}

func TestCountsRemoveTheBodyAfterTheLastRelease(t *testing.T) {
	js := connect(t)
	s := open(t, js, Config{})
	ref, err := s.Put(ctx(t), "tn_1", compressible(200<<10))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx(t), ref, 3); err != nil {
		t.Fatal(err)
	}
	// The router routed the event again (redelivery): counted once.
	if err := s.Hold(ctx(t), ref, 3); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx(t), ref); n != 3 {
		t.Fatalf("count %d after holding 3 twice, want 3", n)
	}
	for i, id := range []string{"job_a:1", "job_b:2", "job_b:2"} { // job_b released twice
		if err := s.Release(ctx(t), ref, id); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	if n, _ := s.Count(ctx(t), ref); n != 1 || !exists(t, js, ref.Key) {
		t.Fatalf("count %d, exists %v; want 1 and kept (job_c still needs it)", n, exists(t, js, ref.Key))
	}
	// A resend adds two jobs.
	if err := s.Retain(ctx(t), ref, 2, "rsd_1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"job_c:3", "job_a:4", "job_c:5"} {
		if err := s.Release(ctx(t), ref, id); err != nil {
			t.Fatal(err)
		}
	}
	if exists(t, js, ref.Key) {
		t.Fatal("body kept after the last job released it")
	}
	if _, err := s.Get(ctx(t), ref); !errors.Is(err, ErrGone) || !Permanent(err) {
		t.Fatalf("get after removal: %v, want ErrGone", err)
	}
	if err := s.Retain(ctx(t), ref, 1, "rsd_2"); !errors.Is(err, ErrGone) {
		t.Fatalf("retain after removal: %v, want ErrGone", err)
	}
	if n, _ := s.Count(ctx(t), ref); n != 0 {
		t.Fatalf("count %d after a refused retain, want 0", n)
	}
}

func TestHoldNoJobsRemovesAtOnce(t *testing.T) {
	js := connect(t)
	s := open(t, js, Config{})
	ref, err := s.Put(ctx(t), "tn_1", compressible(100<<10))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx(t), ref, 0); err != nil {
		t.Fatal(err)
	}
	if exists(t, js, ref.Key) {
		t.Fatal("body of an event without jobs kept")
	}
}

func TestResolveProducerObjects(t *testing.T) {
	js := connect(t)
	s := open(t, js, Config{MaxBytes: 1 << 20})
	obs, err := js.ObjectStore(ctx(t), bus.PayloadBucket)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, b []byte, h nats.Header) {
		t.Helper()
		if _, err := obs.Put(ctx(t), jetstream.ObjectMeta{Name: key, Headers: h}, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	data := compressible(300 << 10)
	put("tn_1/plain", data, nil)
	enc, _ := zstd.NewWriter(nil)
	put("tn_1/packed.json", enc.EncodeAll(data, nil), nats.Header{HeaderEncoding: {"zstd"}})
	put("tn_1/not-json", []byte(`{"a":`), nil)
	put("tn_1/null", []byte(` null `), nil)
	put("tn_2/theirs", data, nil)
	put("tn_1/bomb", enc.EncodeAll(make([]byte, 2<<20), nil), nats.Header{HeaderEncoding: {"zstd"}})

	for _, key := range []string{"tn_1/plain", "tn_1/packed.json"} {
		ref, err := s.Resolve(ctx(t), "tn_1", key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if ref.Size != int64(len(data)) || ref.Key != key {
			t.Fatalf("%s: ref %+v", key, ref)
		}
		got, err := s.Get(ctx(t), ref)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: get: %v", key, err)
		}
	}
	for _, key := range []string{"tn_1/not-json", "tn_1/null", "tn_2/theirs", "tn_1/missing", "tn_1/", "tn_1/bomb", "tn_10/x"} {
		if _, err := s.Resolve(ctx(t), "tn_1", key); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", key, err)
		}
	}
}

func TestGetRefusesOtherBuckets(t *testing.T) {
	js := connect(t)
	s := open(t, js, Config{})
	if _, err := s.Get(ctx(t), &heraldv1.PayloadRef{Bucket: "herald-config", Key: "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("%v, want ErrInvalid", err)
	}
}

func TestInlineThresholdStaysBelowMaxPayload(t *testing.T) {
	js := connect(t)
	s := open(t, js, Config{InlineBytes: 8 << 20})
	if mp := int(js.Conn().MaxPayload()); s.InlineBytes() >= mp {
		t.Fatalf("inline threshold %d not below max_payload %d", s.InlineBytes(), mp)
	}
}
