// Package e2e holds Herald's end-to-end tests. They run Herald against real
// servers only: an embedded or child nats-server, a real Redis (testenv),
// the service in process (service.Run) and the built binaries as child
// processes, and a receiver that verifies every request with the official
// Standard Webhooks library. Run them with
//
//	go test -race -count=1 ./services/e2e/...
//
// A test skips (loudly) only when a real server cannot be had, e.g. no
// Redis: set REDIS_URL, start Docker, or install redis-server.
package e2e
