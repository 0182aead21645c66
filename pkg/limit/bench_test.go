package limit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAdmitDone measures Admit then Done (two script round trips)
// against real Redis, from many goroutines over 64 endpoints, with a rate
// limit and a cap high enough never to refuse; and the same in local mode.
func BenchmarkAdmitDone(b *testing.B) {
	eps := make([]string, 64)
	for i := range eps {
		eps[i] = "ep_" + strconv.Itoa(i)
	}
	run := func(b *testing.B, l *Limiter, parallel bool) {
		ctx := context.Background()
		var refused atomic.Int64
		var n atomic.Uint64
		one := func() {
			p, d := l.Admit(ctx, eps[n.Add(1)%uint64(len(eps))], 100_000, 30*time.Second)
			if !d.Allowed {
				refused.Add(1)
				return
			}
			p.Done(ctx, true)
		}
		b.ReportAllocs()
		b.ResetTimer()
		if parallel {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					one()
				}
			})
		} else {
			for b.Loop() {
				one()
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "admits/s")
		if r := refused.Load(); r > int64(b.N)/100 {
			b.Logf("%d of %d refused", r, b.N)
		}
	}
	b.Run("redis/serial", func(b *testing.B) {
		rdb, prefix := newRedis(b)
		run(b, New(rdb, prefix, WithConcurrency(100_000)), false)
	})
	b.Run("redis/parallel", func(b *testing.B) {
		rdb, prefix := newRedis(b)
		run(b, New(rdb, prefix, WithConcurrency(100_000)), true)
	})
	b.Run("local/parallel", func(b *testing.B) {
		run(b, New(nil, "", WithConcurrency(100_000)), true)
	})
}
