package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// DefaultMaxInflightEventBytes bounds the event bodies one process holds
// at intake at once (HERALD_MAX_INFLIGHT_EVENT_BYTES).
const DefaultMaxInflightEventBytes = 64 << 20

// readChunk is the first buffer of a body without Content-Length.
const readChunk = 64 << 10

var (
	inflightBytes = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "herald_ingest_inflight_bytes",
		Help: "Bytes of event bodies held by this process's intake, from before they are read until they are stored.",
	})
	busyRefusals = promauto.NewCounter(prometheus.CounterOpts{
		Name: "herald_ingest_busy_total",
		Help: "Events refused with 503 because this process's intake held HERALD_MAX_INFLIGHT_EVENT_BYTES of bodies already.",
	})
)

// budget bounds the event bytes in flight at intake. Limits on requests
// alone did not bound memory: 50 concurrent 5 MiB events drove a process
// to 1.6 GB, since each body is read, decoded, compressed and published,
// several copies at a time. Bytes are taken before they are read and given
// back once the event is stored (or refused); a request that finds the
// budget spent is refused at once, before its body is read. Large bodies
// may use seven eighths of it, small ones all of it.
type budget struct {
	max  int64
	used atomic.Int64
}

// smallEvent is the largest take that may use the budget's last eighth:
// kept for small events, so that a burst of large ones does not stop them.
const smallEvent = 64 << 10

// take takes n more bytes for a body that holds held already, if they
// fit. A body larger than the whole budget is let through when nothing
// else is held, so that every event the size limit allows can be accepted.
func (b *budget) take(n, held int64) bool {
	limit := b.max
	if n > smallEvent {
		limit -= b.max / 8
	}
	for {
		used := b.used.Load()
		if used+n > limit && used > held {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			inflightBytes.Add(float64(n))
			return true
		}
	}
}

// give returns n bytes taken.
func (b *budget) give(n int64) {
	if n > 0 {
		b.used.Add(-n)
		inflightBytes.Sub(float64(n))
	}
}

// errBusy: the budget is spent.
var errBusy = errors.New("intake busy")

// readEvent reads an event body of at most limit bytes (handle's
// MaxBytesReader enforces it) within the budget: its Content-Length at once
// when the client sent one (the buffer is then allocated once, at its
// size), or as it arrives, taking what the buffer grows by. It returns
// the body and the bytes taken, which the caller gives back when the event
// is stored or refused; on an error nothing is held.
func (s *Server) readEvent(r *http.Request, limit int64) (body []byte, held int64, err error) {
	if r.ContentLength >= 0 {
		n := r.ContentLength // within the limit: handle refused larger ones
		if !s.inflight.take(n, 0) {
			return nil, 0, errBusy
		}
		body = make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			s.inflight.give(n)
			return nil, 0, fmt.Errorf("read the body: %w", err)
		}
		return body, n, nil
	}
	// Without a length the buffer grows as the body arrives; what it can
	// hold is taken from the budget before it is read into.
	for {
		if len(body) == cap(body) {
			// Doubling, up to one byte past the limit (where the
			// MaxBytesReader stops).
			size := min(max(2*int64(cap(body)), readChunk), limit+1)
			more := size - int64(cap(body))
			if !s.inflight.take(more, held) {
				s.inflight.give(held)
				return nil, 0, errBusy
			}
			grown := make([]byte, len(body), size)
			copy(grown, body)
			held, body = held+more, grown
		}
		n, err := r.Body.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			return body, held, nil
		}
		if err != nil {
			s.inflight.give(held)
			return nil, 0, fmt.Errorf("read the body: %w", err)
		}
	}
}
