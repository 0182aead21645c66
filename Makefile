# Herald's entry points. A fresh machine needs only `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/heraldhq/herald/pkg/version.Version=$(VERSION)
# pkg/internal/testenv is a module of its own (see its package doc), which
# ./pkg/... does not reach; so is deploy (the tests of docker-compose.yml and
# deploy/kubernetes, which keep the Kubernetes libraries out of pkg).
PKGS := ./pkg/... ./pkg/internal/testenv/... ./services/... ./proto/... ./deploy/...
BUF_VERSION := v1.50.0
PROTOC_GEN_GO_VERSION := v1.36.12

.PHONY: run build install test test-deps vet proto bench clean

## run: build and start the all-in-one herald (embedded NATS, data in ./data)
run: build
	./bin/herald

## build: bin/herald, bin/herald-ingest, bin/herald-router, bin/herald-sender
build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/herald ./services/herald
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/herald-ingest ./services/ingest
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/herald-router ./services/router
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/herald-sender ./services/sender

## install: put the herald command, with its version, in $(PREFIX)/bin (default: $(go env GOPATH)/bin)
PREFIX ?= $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))
install:
	@mkdir -p "$(PREFIX)/bin"
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o "$(PREFIX)/bin/herald" ./services/herald
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "note: $(PREFIX)/bin is not on your PATH; add it: export PATH=\"$(PREFIX)/bin:\$$PATH\"";; esac

## test: the whole suite, with the race detector, against real NATS and Redis; then the fault
## suite on its own, as test-faults runs it (below)
test: test-deps vet fuzz
	$(GO) test -race -count=1 -timeout 15m $$($(GO) list $(PKGS) | grep -v '/services/faults$$')
	$(GO) test -count=1 -timeout 15m ./services/faults/...

## test-faults: the fault suite (services/faults): steady load through ingest, router, two
## senders, nats-server and Redis as processes, one fault per row, then exact counts per event
## and endpoint (healthy, first-fail, always-fail); prints a table (~3.5 min on 2 cores). No -race: the Herald binaries it runs are built without it, as
## operators run them; -race would slow only the test's own producer and receiver, which
## skews the faults they play (HERALD_FAULTS_RACE=1 builds the binaries with -race instead).
## `make test` runs it after the other packages, not beside them: every endpoint of its rows has
## a 1 s timeout, and a receiver sharing 2 cores with the e2e and bench stacks, under -race, can
## miss it (an honest retry the books would count as a duplicate).
.PHONY: test-faults
test-faults: test-deps
	$(GO) test -count=1 -v -timeout 20m ./services/faults/...

# Tests start their own servers: an embedded or built-from-source nats-server,
# and redis-server from the PATH, which tests that stop, kill or flush their
# Redis (the fault suite, the limiter's and the cache's outage tests) need even
# when REDIS_URL names a shared one. The portal's browser test drives Debian's
# chromium. Make sure both exist: under CI (CI=true) a missing one fails those
# tests instead of skipping them (testenv.Unavailable).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
test-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (tests start their own servers and browser)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

vet:
	@unformatted=$$(gofmt -l pkg services proto deploy | grep -v '\.pb\.go$$'); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

## fuzz: every fuzz target, FUZZTIME each, from its committed seeds in testdata/fuzz/<Name>.
## The budget is a count of executions (Nx), not a duration: Go 1.26's fuzz coordinator can
## fail a duration-bounded run with a spurious "context deadline exceeded" when the -fuzztime
## deadline races a busy worker (go.dev/issue/75804, fixed in Go 1.27). A count has no deadline.
## The seeds also run as plain tests in every `go test`.
FUZZTIME ?= 20000x
.PHONY: fuzz
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime=$(FUZZTIME) ./pkg/event
	$(GO) test -run '^$$' -fuzz '^FuzzEndpointInput$$' -fuzztime=$(FUZZTIME) ./pkg/api
	$(GO) test -run '^$$' -fuzz '^FuzzValidateType$$' -fuzztime=$(FUZZTIME) ./pkg/match
	$(GO) test -run '^$$' -fuzz '^FuzzMatches$$' -fuzztime=$(FUZZTIME) ./pkg/match
	$(GO) test -run '^$$' -fuzz '^FuzzParseEventSubject$$' -fuzztime=$(FUZZTIME) ./pkg/bus
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime=$(FUZZTIME) ./pkg/retry
	$(GO) test -run '^$$' -fuzz '^FuzzParseRetryAfter$$' -fuzztime=$(FUZZTIME) ./pkg/retry
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime=$(FUZZTIME) ./pkg/verify
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime=$(FUZZTIME) ./pkg/seal

## proto: regenerate the Go code of proto/ (committed)
proto:
	cd proto && PATH="$$($(GO) env GOPATH)/bin:$$PATH" sh -c '\
		command -v protoc-gen-go >/dev/null || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION); \
		$(GO) run github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION) generate'

## bench: load-test Herald beside this machine's limit: every scenario on the all-in-one and on
## separate processes (scaling: separate only, with 1, 2 and 4 senders; DEPLOYMENTS=separate-r3 for a
## three-node JetStream cluster); results in bench/results/, figures in docs/performance.md.
## Select with SCENARIOS=single,latency (and DEPLOYMENTS=all-in-one); BENCH_FLAGS passes more flags.
SCENARIOS ?= all
DEPLOYMENTS ?= all-in-one,separate
bench: build
	$(GO) run ./services/bench/runner --bin bin --scenarios $(SCENARIOS) --deployments $(DEPLOYMENTS) \
		--out bench/results --doc docs/performance.md $(BENCH_FLAGS)

clean:
	rm -rf bin
