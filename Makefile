# Vigil — the two commands a new user needs are `make demo` and `make test`.
GO        ?= go
BIN       ?= bin/vigil
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The same flags as the Dockerfile: a static, reproducible binary.
BUILD_FLAGS = -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME  ?= 30s

.PHONY: build test bench fuzz lint demo demo-replay rules-check clean clickhouse-install clickhouse-start clickhouse-stop clickhouse-status

build:
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o $(BIN) ./cmd/vigil

# Static checks, all tests with the race detector, then the shipped rule pack's lint and unit tests.
test: build lint
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run '^TestPack' ./traffic/   # the rule pack on full-rate generated days (too slow under -race)
	$(MAKE) --no-print-directory rules-check

rules-check: build
	$(BIN) rules lint configs/rules
	$(BIN) rules test configs/rules/tests configs/examples/example.test.yaml

# Hot-path benchmarks with allocation counts; figures go to docs/performance.md.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./event/ ./rules/expression/ ./detector/ ./replay/

# Each fuzz target for FUZZTIME (go test runs one target per invocation).
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./event/
	$(GO) test -run='^$$' -fuzz='^FuzzCompile$$' -fuzztime=$(FUZZTIME) ./rules/expression/
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./rules/

lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1)

# The whole daemon: ClickHouse, the dev broker, vigil run, generated traffic with attacks.
demo: build
	@bash scripts/demo-daemon.sh

# The same traffic through `vigil replay` only (no servers).
demo-replay: build
	@bash scripts/demo.sh

# A real ClickHouse server on loopback (chDB's engine from npm); see scripts/clickhouse.sh.
# Tests start their own; these are for the demo and for poking around.
clickhouse-install:
	@bash scripts/clickhouse.sh install
clickhouse-start:
	@bash scripts/clickhouse.sh start
clickhouse-stop:
	@bash scripts/clickhouse.sh stop
clickhouse-status:
	@bash scripts/clickhouse.sh status

clean:
	-@bash scripts/clickhouse.sh stop
	rm -rf bin .cache
