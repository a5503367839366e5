# Vigil — the two commands a new user needs are `make demo` and `make test`.
GO        ?= go
BIN       ?= bin/vigil
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The same flags as the Dockerfile: a static, reproducible binary.
BUILD_FLAGS = -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
# go.mod's toolchain line (the Go release with the standard library's security fixes that
# `make vuln` checks for) is honoured even where the go env says GOTOOLCHAIN=local: an older local
# Go downloads it once through the module proxy; a newer one is used as it is.
export GOTOOLCHAIN := local+auto
STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME  ?= 30s
# Budget for minimising each new input a fuzzer finds (go's default, 60s,
# can take a whole FUZZTIME), and fuzz workers per target.
FUZZMINIMIZETIME ?= 100x
FUZZPARALLEL ?= 1
# package:FuzzName for every fuzz target; scripts/soak.sh warns about any
# func Fuzz… missing here.
FUZZ_TARGETS = event:FuzzDecode rules/expression:FuzzCompile rules/expression:FuzzParseAddr \
	rules:FuzzParse rules:FuzzParseRules config:FuzzParse config:FuzzParseConfig ruletest:FuzzRuleTestFile

.PHONY: build test bench fuzz soak vuln lint demo demo-replay rules-check clean clickhouse-install clickhouse-start clickhouse-stop clickhouse-status clickhouse-cluster-start clickhouse-cluster-stop

build:
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o $(BIN) ./cmd/vigil

# Static checks, all tests with the race detector (fuzz targets run their seed corpus), the shipped
# rule pack's lint and unit tests, then known vulnerabilities (the short profile of docs/reliability.md).
test: build lint
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run '^TestPack' ./traffic/   # the rule pack on full-rate generated days (too slow under -race)
	$(GO) test -count=1 -run '^TestDaemonAcceptance$$' ./cmd/vigil/   # the daemon on a million records (too slow under -race)
	$(MAKE) --no-print-directory rules-check
	$(MAKE) --no-print-directory vuln

rules-check: build
	$(BIN) rules lint configs/rules
	$(BIN) rules test configs/rules/tests configs/examples/example.test.yaml

# Hot-path benchmarks with allocation counts; figures go to docs/performance.md.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./event/ ./rules/expression/ ./detector/ ./replay/

# Each fuzz target for FUZZTIME, one after the other (go test fuzzes one target per invocation),
# then a summary; a failing target does not stop the others, and its input lands in
# <pkg>/testdata/fuzz/. The fuzz half of scripts/soak.sh.
fuzz:
	@FUZZ_TARGETS='$(FUZZ_TARGETS)' GO='$(GO)' SOAK_FUZZTIME=$(FUZZTIME) SOAK_FUZZMINIMIZE=$(FUZZMINIMIZETIME) \
		SOAK_PARALLEL=$(FUZZPARALLEL) SOAK_COUNT=0 bash scripts/soak.sh

# The long profile: every fuzz target for 5 minutes, the crash/fault/reload tests 3 times under
# -race, a summary; settings in scripts/soak.sh (SOAK_FUZZTIME, SOAK_COUNT, ...).
soak:
	FUZZ_TARGETS='$(FUZZ_TARGETS)' GO='$(GO)' bash scripts/soak.sh

# Known vulnerabilities in the code Vigil calls (govulncheck; works without vuln.go.dev).
vuln:
	GO='$(GO)' bash scripts/govulncheck.sh

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
# Two servers as two shards of cluster vigil (docs/clickhouse-cluster.md).
clickhouse-cluster-start:
	@bash scripts/clickhouse.sh start-cluster
clickhouse-cluster-stop:
	@bash scripts/clickhouse.sh stop-cluster

clean:
	-@bash scripts/clickhouse.sh stop
	-@bash scripts/clickhouse.sh stop-cluster
	rm -rf bin .cache
