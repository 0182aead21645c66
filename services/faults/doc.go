// Package faults is Herald's fault suite. Each row runs Herald as separate
// processes (herald-ingest, herald-router, two herald-senders) against a
// nats-server process (or a three-node cluster) and Redis, drives an
// open-loop producer at a steady rate through POST /v1/events and straight
// to NATS, injects one fault during the load, and then balances the books
// to the request. TestMain prints a table of the rows (and writes it to
// $HERALD_FAULTS_REPORT when set).
//
//	make test-faults   # go test -count=1 -v -timeout 20m ./services/faults/...
//
// # What every row proves
//
// Every row has the same three endpoints, and the receiver's own records
// (every request, per webhook-id and endpoint, with its Herald-Attempt)
// decide:
//
//   - ok, healthy: every event, answered 204. Exactly one request per
//     event, attempt 1.
//   - ff, first-fail: four events in ten; the receiver answers 500 to the
//     first request it sees of an event and 204 to the next. Exactly two
//     requests, attempts 1 and 2.
//   - af, always-fail: two events in ten, answered 500, max_attempts 3.
//     Exactly three requests, attempts 1, 2, 3, and exactly one dead
//     letter, listed by GET /v1/dlq with attempt 3 last and the reason
//     "gave up after 3 attempts".
//
// ok and ff keep Herald's default max_attempts (5), and must have no dead
// letter. A job short of a request or of its final state fails the row, as
// does an attempt number above max_attempts. A duplicate (a request
// repeating an attempt number, an attempt above the expected count, a
// second dead letter) fails the row unless the row's allowance names it
// with the fault's reason; the table reports every duplicate seen. Each row
// also checks that every service reports not-ready while a dependency is
// down and ready after, that a new endpoint still reaches routing, and that
// no process was restarted except the ones the fault restarted.
//
// The rows: kill -9 a sender, the router, ingest; stop NATS and start it;
// kill -9 NATS and start it on the same store (no loss: the file store
// syncs every 2 minutes, which a host crash could cost, but a process crash
// keeps what the OS holds); stop Redis and start it empty; FLUSHALL Redis;
// Redis down 10 s while the endpoint cap refuses jobs; the receiver
// refusing connections, then slow; DELIVERIES deleted and recreated by
// Herald; two deployments sharing one Redis and prefix; an R3 cluster
// losing a node, then another.
//
// # The configuration
//
// Herald runs as users run it: the default endpoint cap (10 in flight),
// Redis on, the egress policy on, the default workers, limits and
// max_attempts. The suite sets only:
//
//   - where its servers are (NATS_URL, REDIS_URL, HERALD_REDIS_PREFIX,
//     HERALD_HTTP_ADDR, HERALD_EMBEDDED_NATS=false for separate processes,
//     HERALD_STREAM_REPLICAS=3 on the cluster) and its keys
//     (HERALD_ADMIN_TOKEN, HERALD_ENCRYPTION_KEY);
//   - HERALD_EGRESS_ALLOW_CIDRS=127.0.0.1/32: the receiver listens on
//     loopback; an exception for that one address, the policy stays on;
//   - timings that only make things happen sooner: HERALD_RETRY_SCHEDULE=
//     1s,1s,2s (whole seconds, as retries are message schedules that fire
//     on whole seconds) and HERALD_ACK_WAIT=2s (a killed process's messages
//     move on in 2 s, not 30 s);
//   - HERALD_BREAKER_FAILING_FOR=5m, the one setting that keeps a behaviour
//     out of the rows, and why: the always-fail endpoint fails every
//     request for the whole row, so with the default (10 s) its breaker
//     would open 10 s in, hold its jobs for 30 s and double that at every
//     failed probe up to 10 minutes; no row could see its third attempts in
//     a CI budget. The breaker stays armed at its defaults otherwise (5
//     failures, 30 s cool-down), and services/e2e TestBreakerAcrossSenders
//     proves it opens, probes one request at a time and uses no attempt
//     while open;
//   - HERALD_LOG_LEVEL=info.
//
// A Redis the suite does not fault comes from testenv.Redis, so REDIS_URL
// is honoured (each row under a prefix of its own); rows that stop or flush
// Redis start a redis-server of their own, which must be on the PATH (make
// test-deps installs it). Without it the rows skip loudly, and under CI
// (CI=true) they fail instead. nats-server is built from the module
// (testenv.NATSBinary).
package faults
