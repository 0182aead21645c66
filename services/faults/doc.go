// Package faults is Herald's fault suite. Each test runs Herald as separate
// processes (herald-ingest, herald-router, two herald-senders) against a
// nats-server process (or a three-node cluster) and a redis-server process,
// drives an open-loop producer at a steady rate through POST /v1/events and
// straight to NATS, injects one fault during the load (kill -9 a sender or
// the router or ingest, stop NATS, stop Redis and bring it back empty, take
// the receiver down then make it slow, lose cluster nodes), and then checks
// the books: every event that got a 202 or a JetStream ack reached every
// matching endpoint or the DLQ, none is missing, duplicates are counted. It
// also checks that every service reports not-ready while a dependency is
// down and ready after, and that no process was restarted except the one
// the fault killed. TestMain prints a table of the rows.
//
//	make test-faults   # go test -count=1 -v -timeout 20m ./services/faults/...
//
// The tests need the nats-server module (built once from the module proxy,
// see testenv.NATSBinary) and redis-server on the PATH; they skip loudly
// without redis-server.
package faults
