package history_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/history"
)

// TestFilteredAttempts pages through a time range and an event-type
// filter, in both indexes: every attempt that matches is listed once,
// newest first, and nothing else; the counts per endpoint are exact.
func TestFilteredAttempts(t *testing.T) {
	url, prefix := testenv.Redis(t)
	for name, idx := range map[string]history.Index{
		"memory": history.NewMemory(0),
		"redis":  history.NewRedis(redisClient(t, url), prefix, 0),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := ctxFor(t)
			base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
			var b history.Batch
			const n = 3000
			for i := range n {
				a := history.FromProto(attempt("tn_f", "ep_f", fmt.Sprintf("ev-%d", i), 1, base.Add(time.Duration(i)*time.Millisecond), 200+300*(i%2)))
				if i%100 == 0 {
					a.EventType = "member.added"
				}
				b.Attempts = append(b.Attempts, history.TenantAttempt{Tenant: "tn_f", Attempt: a})
			}
			if _, err := idx.Apply(ctx, &b); err != nil {
				t.Fatal(err)
			}
			r := history.NewReader(idx, nil)
			since, until := base.Add(1000*time.Millisecond), base.Add(2999*time.Millisecond)
			q := history.Query{Limit: 7, Since: since, Until: until, Status: history.StatusSucceeded,
				Keep: func(a history.Attempt) bool { return a.EventType == "member.added" }}
			var got []string
			pages := 0
			for {
				p, err := r.Attempts(ctx, "tn_f", "ep_f", q)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, a := range p.Attempts {
					got = append(got, a.EventID)
				}
				if p.NextCursor == "" {
					break
				}
				q.Cursor = p.NextCursor
			}
			// member.added at i%100 == 0 and succeeded (even i), 1000..2999.
			var want []string
			for i := 2900; i >= 1000; i -= 100 {
				want = append(want, fmt.Sprintf("ev-%d", i))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v (%d pages), want %v", got, pages, want)
			}
			c, err := r.Counts(ctx, "tn_f", []string{"ep_f", "ep_none"}, base.Add(2000*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if c["ep_f"] != (history.Counts{Succeeded: 500, Failed: 500}) || c["ep_none"] != (history.Counts{}) {
				t.Fatalf("counts %+v", c)
			}
		})
	}
}
