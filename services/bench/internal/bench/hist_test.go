package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	prevHi := int64(-1)
	for b := 0; b < 64*40; b++ {
		lo, hi := bucketBounds(b)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d = [%d,%d], previous ended at %d", b, lo, hi, prevHi)
		}
		for _, v := range []int64{lo, hi, lo + (hi-lo)/2} {
			if got := bucketOf(v); got != b {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, b)
			}
		}
		if lo >= 64 && float64(hi-lo+1)/float64(lo) > 1.0/64+1e-9 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/64 of its value", b, lo, hi)
		}
		prevHi = hi
	}
}

func TestQuantilesMatchSortedValues(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var vals []int64
	for range 100000 {
		v := int64(r.ExpFloat64() * 5000) // µs, a long tail
		vals = append(vals, v)
		h.RecordMicros(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.Quantile(q)
		if math.Abs(float64(got-want)) > float64(want)/64+1 {
			t.Errorf("q%.3f = %d µs, exact %d µs", q, got, want)
		}
	}
	if h.Quantile(1) != vals[len(vals)-1] || h.Max() != vals[len(vals)-1] {
		t.Errorf("max = %d, want %d", h.Quantile(1), vals[len(vals)-1])
	}
	if h.Quantile(0) != vals[0] {
		t.Errorf("min = %d, want %d", h.Quantile(0), vals[0])
	}
}

func TestHistogramMergeAndSummary(t *testing.T) {
	var a, b, all Histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Millisecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	if a.Summary() != all.Summary() {
		t.Fatalf("merged %+v != %+v", a.Summary(), all.Summary())
	}
	s := all.Summary()
	if s.Count != 1000 || s.Max != 1000 || math.Abs(s.P50-500) > 8 || math.Abs(s.P99-990) > 16 || math.Abs(s.Mean-500.5) > 0.01 {
		t.Fatalf("summary %+v", s)
	}
	var neg Histogram
	neg.Record(-time.Millisecond)
	if neg.Negative != 1 || neg.Max() != 0 {
		t.Fatalf("negative value: %+v", neg.Summary())
	}
	var empty Histogram
	if empty.Summary() != (Percentiles{}) {
		t.Fatalf("empty summary %+v", empty.Summary())
	}
}
