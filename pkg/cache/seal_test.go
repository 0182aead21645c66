package cache_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/cache"
	"github.com/heraldhq/herald/pkg/seal"
	"github.com/heraldhq/herald/pkg/store"
)

func testSealer(t *testing.T, b byte) *seal.Sealer {
	t.Helper()
	s, err := seal.New(bytes.Repeat([]byte{b}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The Redis layer holds endpoint secrets sealed: a Redis dump reveals none,
// while every replica holding the key reads them from Redis in clear.
func TestRedisHoldsSecretsSealed(t *testing.T) {
	js := testenv.JetStream(t)
	sl := testSealer(t, 7)
	st, err := store.Open(testCtx(t), js, store.WithSealer(sl))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, st)
	rotated, err := st.UpdateEndpoint(testCtx(t), f.tenant, f.ep.ID, func(e *store.Endpoint) error {
		e.OldSecrets = []store.OldSecret{{Secret: e.Secret, ExpiresAt: time.Now().Add(time.Hour)}}
		e.Secret = "whsec_bmV3LXNlY3JldC1pbi10aGUtcmVkaXMtdGVzdA=="
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	url, prefix := testenv.Redis(t)
	rdb := redisClient(t, url)
	c1 := cache.New(st, st.KV(), cache.WithRedis(rdb, prefix), cache.WithSealer(sl), cache.WithLogger(testenv.Logger(t)))
	c2 := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, url), prefix), cache.WithSealer(sl), cache.WithLogger(testenv.Logger(t)))
	run(t, c1)
	run(t, c2)

	e, err := c1.Endpoint(testCtx(t), f.tenant, f.ep.ID)
	if err != nil || e.Secret != rotated.Secret || len(e.OldSecrets) != 1 || e.OldSecrets[0].Secret != f.ep.Secret {
		t.Fatalf("c1.Endpoint = %+v, %v; want plaintext secrets", e, err)
	}
	raw, err := rdb.Get(testCtx(t), prefix+"cache:endpoints:"+f.tenant).Result()
	if err != nil {
		t.Fatalf("redis entry: %v", err)
	}
	if strings.Contains(raw, rotated.Secret) || strings.Contains(raw, f.ep.Secret) {
		t.Fatalf("redis holds a secret in clear: %s", raw)
	}
	if strings.Count(raw, `"enc:v1:`+sl.KeyID()+`:`) != 2 {
		t.Fatalf("redis entry does not hold both secrets sealed: %s", raw)
	}

	// Another replica reads the entry from Redis, in clear.
	before := layer(t, "redis")
	e2, err := c2.Endpoint(testCtx(t), f.tenant, f.ep.ID)
	if err != nil || e2.Secret != rotated.Secret || e2.OldSecrets[0].Secret != f.ep.Secret {
		t.Fatalf("c2.Endpoint = %+v, %v", e2, err)
	}
	if layer(t, "redis") != before+1 {
		t.Fatal("c2 did not read the sealed Redis entry")
	}

	// A replica with another key does not open the entry: it reads the
	// store instead, which here it can (its store has the key).
	c3 := cache.New(st, st.KV(), cache.WithRedis(redisClient(t, url), prefix), cache.WithSealer(testSealer(t, 8)), cache.WithLogger(testenv.Logger(t)))
	storeBefore := layer(t, "store")
	e3, err := c3.Endpoint(testCtx(t), f.tenant, f.ep.ID)
	if err != nil || e3.Secret != rotated.Secret {
		t.Fatalf("c3.Endpoint = %+v, %v", e3, err)
	}
	if layer(t, "store") != storeBefore+1 {
		t.Fatal("an entry that does not open was served from Redis")
	}
}
