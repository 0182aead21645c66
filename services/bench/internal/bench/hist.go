package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of mantissa bits a Histogram bucket keeps: 64
// buckets per power of two, so a recorded value is known to within 1/64
// (1.6 %), which is finer than run-to-run noise on any machine.
const subBits = 6

const subCount = 1 << subBits

// Histogram is a log-linear latency histogram in microseconds, in the
// manner of HdrHistogram: constant memory whatever the count, mergeable,
// exact below 64 µs, within 1.6 % above. The zero value is ready to use. It
// is not safe for concurrent use.
type Histogram struct {
	counts   []uint64
	n        uint64
	min, max int64 // µs, exact
	sum      float64
	// Negative counts values below zero that were recorded as zero (a
	// delivery seen before its producer got the 202: one machine's clock,
	// but two goroutines racing).
	Negative uint64
}

func bucketOf(us int64) int {
	if us < subCount {
		return int(us)
	}
	e := bits.Len64(uint64(us)) - (subBits + 1)
	return (e+1)*subCount + int(us>>e) - subCount
}

// bucketBounds returns the smallest and largest value of bucket b.
func bucketBounds(b int) (lo, hi int64) {
	if b < subCount {
		return int64(b), int64(b)
	}
	e := b/subCount - 1
	m := int64(b%subCount + subCount)
	return m << e, (m+1)<<e - 1
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		h.Negative++
		d = 0
	}
	h.RecordMicros(d.Microseconds())
}

// RecordMicros adds one value in microseconds.
func (h *Histogram) RecordMicros(us int64) {
	if us < 0 {
		h.Negative++
		us = 0
	}
	b := bucketOf(us)
	if b >= len(h.counts) {
		n := make([]uint64, b+1+subCount)
		copy(n, h.counts)
		h.counts = n
	}
	h.counts[b]++
	if h.n == 0 || us < h.min {
		h.min = us
	}
	if us > h.max {
		h.max = us
	}
	h.n++
	h.sum += float64(us)
}

// Merge adds every value of o.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		n := make([]uint64, len(o.counts))
		copy(n, h.counts)
		h.counts = n
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
	h.Negative += o.Negative
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest value recorded, exactly, in microseconds.
func (h *Histogram) Max() int64 { return h.max }

// Quantile returns the value at quantile q (0..1) in microseconds: the
// smallest recorded value v such that at least q of the values are <= v,
// reported as the middle of its bucket and clamped to the exact min and max.
// It is 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	if q <= 0 {
		return h.min
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketBounds(b)
			v := lo + (hi-lo)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Percentiles are the latency figures of a run, in milliseconds.
type Percentiles struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
	// Negative counts values clamped to zero; see Histogram.Negative.
	Negative uint64 `json:"negative,omitempty"`
}

// Summary returns the percentiles in milliseconds.
func (h *Histogram) Summary() Percentiles {
	ms := func(us int64) float64 { return math.Round(float64(us)) / 1000 }
	p := Percentiles{Count: h.n, Negative: h.Negative}
	if h.n == 0 {
		return p
	}
	p.Mean = math.Round(h.sum/float64(h.n)) / 1000
	p.P50 = ms(h.Quantile(0.50))
	p.P90 = ms(h.Quantile(0.90))
	p.P99 = ms(h.Quantile(0.99))
	p.P999 = ms(h.Quantile(0.999))
	p.Max = ms(h.max)
	return p
}
