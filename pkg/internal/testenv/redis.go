package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// redisImage is used when Redis comes from testcontainers.
const redisImage = "redis:7-alpine"

// Redis returns a Redis URL for this test and a key prefix unique to it
// ("test:<name>:<random>:"). The server is, in order: REDIS_URL (keys under
// the prefix are deleted at cleanup); a testcontainers redis container when a
// Docker provider is healthy; a child redis-server from PATH (no
// persistence). If none is available, the test is skipped, or under CI
// failed (see Unavailable).
func Redis(t testing.TB) (url, prefix string) {
	t.Helper()
	prefix = "test:" + strings.ReplaceAll(t.Name(), " ", "_") + ":" + randHex(4) + ":"
	if u := os.Getenv("REDIS_URL"); u != "" {
		t.Cleanup(func() { deleteKeys(t, u, prefix) })
		return u, prefix
	}
	if dockerHealthy() {
		u, err := redisContainer(t)
		if err == nil {
			return u, prefix
		}
		t.Logf("testenv: redis container failed, trying redis-server: %v", err)
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		return RedisProcess(t).URL(), prefix
	}
	Unavailable(t, "no Redis available: set REDIS_URL, start Docker, or install redis-server (make test-deps does)")
	return "", ""
}

var dockerHealthy = sync.OnceValue(func() (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	p, err := testcontainers.ProviderDocker.GetProvider()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Health(ctx) == nil
})

func redisContainer(t testing.TB) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := tcredis.Run(ctx, redisImage)
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		return "", err
	}
	return c.ConnectionString(ctx)
}

func deleteKeys(t testing.TB, url, prefix string) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		rdb.Unlink(ctx, keys[:n]...)
		keys = keys[n:]
	}
	if err := iter.Err(); err != nil {
		t.Logf("testenv: cleaning %s* on REDIS_URL: %v", prefix, err)
	}
}

// RedisProcess starts redis-server from PATH as a child process on a free
// loopback port, without persistence, and returns once it answers. Stop or
// Kill it and Start it again on the same port (empty). It is for tests
// that stop, kill or flush their Redis, which they must not do to a shared
// REDIS_URL; a test that only needs a Redis calls Redis instead. Without
// redis-server on PATH the test is skipped, or under CI failed (see
// Unavailable).
func RedisProcess(t testing.TB) *Process {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, "redis-server not on PATH: install it (make test-deps does)")
	}
	dir := t.TempDir()
	p := newProcess(t, "redis-server", nil, bin)
	p.ready = func(p *Process, within time.Duration) error {
		return p.poll(within, func() error { return checkRedisPid(p.addr(), p.Pid()) })
	}
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before the server binds it
		port := strconv.Itoa(FreePort(t))
		p.args = []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--logfile", ""}
		p.url = "redis://127.0.0.1:" + port + "/0"
		if err = p.start(); err != nil {
			break
		}
		if err = p.ready(p, readyTimeout); err == nil {
			return p
		}
		p.Kill()
	}
	t.Fatalf("testenv: redis-server not ready: %v", err)
	return nil
}

// FlushRedis empties the Redis at url (FLUSHALL), as an operator's mistake
// or a failover to an empty replica would, and returns how many keys the
// database of url held just before, so a test can tell it flushed
// something. Only for a Redis the test owns (RedisProcess): it deletes
// every key, not just the test's.
func FlushRedis(t testing.TB, url string) (keys int64) {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("testenv: flush %s: %v", url, err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pipe := rdb.TxPipeline() // MULTI: nothing is written between the count and the flush
	size := pipe.DBSize(ctx)
	pipe.FlushAll(ctx)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("testenv: FLUSHALL on %s: %v", url, err)
	}
	return size.Val()
}

// checkRedisPid asks addr for INFO server and checks the answer comes from
// process pid (not whoever else may own the port).
func checkRedisPid(addr string, pid int) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "INFO server\r\n"); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(head, "$") {
		return fmt.Errorf("unexpected reply %q", strings.TrimSpace(head))
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	want := "process_id:" + strconv.Itoa(pid) + "\r\n"
	if !strings.Contains(string(body), want) {
		return fmt.Errorf("port answered by another redis (want %q)", strings.TrimSpace(want))
	}
	return nil
}
