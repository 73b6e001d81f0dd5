# Every target that needs servers first runs scripts/services.sh (idempotent): it installs
# and starts PostgreSQL, PgBouncer and Redis on this machine and writes their URLs to .services.env.
SHELL := /bin/bash
GO ?= go
# Each Go module in the repository; integration/ is its own module so that its test-only
# dependencies (testcontainers-go, benchmark peers) stay out of the library's go.mod,
# otelpgonce/ so that the core does not depend on OpenTelemetry, delivery/ so that it does not
# depend on River, and examples/ so that the example services' dependencies (delivery, and so
# River) stay out of it too.
MODULES := . delivery examples integration otelpgonce
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
WITH_SERVICES := set -a && . ./.services.env && set +a

SOAK_DURATION ?= 60s

.PHONY: test services lint demo soak soak-pgbouncer fuzz bench

## demo: the order service (two instances) on local PostgreSQL and Redis, a burst of duplicates.
demo:
	@scripts/demo.sh

## test: start services, lint, and run every test of every module with the race detector.
test: services lint
	@$(WITH_SERVICES) && for m in $(MODULES); do \
		echo "== go test -race ($$m)"; \
		(cd $$m && $(GO) test -race -count=1 -timeout 10m ./...) || exit 1; \
	done
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory soak SOAK_DURATION=30s
	@$(MAKE) --no-print-directory soak-pgbouncer SOAK_DURATION=10s
	@$(MAKE) --no-print-directory soak-generations SOAK_DURATION=12s
	@$(MAKE) --no-print-directory soak-checkout SOAK_DURATION=20s

# Each target runs for a count of executions, not a duration: with a duration (-fuzztime 10s) Go
# 1.26's fuzz coordinator can report its own stop as "context deadline exceeded" and fail a
# target that found nothing (go.dev/issue/75804, fixed in Go 1.27), which on a busy machine
# it did. A count has no deadline to race; a slow machine just takes longer. The counts are
# about 10 s each on a quiet 2-core machine; FUZZ_SCALE multiplies them (make fuzz FUZZ_SCALE=6
# for about a minute each). Minimizing a new input is bounded by a count too (-fuzzminimizetime
# 5000x): by default it may take 60 s per input, which a duration used to cut short.
FUZZ_SCALE ?= 1
FUZZ_TARGETS := ./dedupe:FuzzFingerprint:60000 ./dedupe/dedupehttp:FuzzParseKey:80000 \
	./dedupe/dedupehttp:FuzzMiddleware:55000

## fuzz: run each fuzz target for its count of executions times FUZZ_SCALE (seed corpora live in
## testdata/fuzz).
fuzz: services
	@$(WITH_SERVICES) && for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$$(( $${rest#*:} * $(FUZZ_SCALE) )); \
		echo "== go test -fuzz $$name -fuzztime $${n}x -fuzzminimizetime 5000x $$pkg"; \
		$(GO) test -run XXX -fuzz "^$$name$$" -fuzztime $${n}x -fuzzminimizetime 5000x "$$pkg" || exit 1; \
	done

## soak: mixed hostile workload against two in-process order services, then the checker.
soak: services
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/soak -duration $(SOAK_DURATION) -clients 32

## soak-pgbouncer: the soak through PgBouncer (transaction pooling) in SOAK_QUERY_MODE, without
## Redis, so every request goes through the pooler. (The integration tests' PgBouncer cases,
## orders end-to-end included, run in `make test` with the rest of the module.)
SOAK_QUERY_MODE ?= simple_protocol
soak-pgbouncer: services
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/soak -duration $(SOAK_DURATION) -clients 16 \
		-redis=false -pgbouncer -query-mode $(SOAK_QUERY_MODE)

## soak-checkout: the paid checkout (orders as a flow, a payment provider with faults, the
## delivery outbox) round after round, an instance restarted and the delivery worker killed in
## each, checked across both databases.
.PHONY: soak-checkout
soak-checkout: services
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/soakcheckout -duration $(SOAK_DURATION)

## services: make PostgreSQL, PgBouncer and Redis reachable and record their URLs in .services.env.
services:
	@scripts/services.sh > .services.env

## lint: gofmt, go vet and staticcheck over every module.
lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@for m in $(MODULES); do \
		echo "== go vet, staticcheck ($$m)"; \
		(cd $$m && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...) || exit 1; \
	done

## bench: the comparison table in README.md (integration/cmd/benchtable), about 12 minutes on 2 cores.
## For benchstat: cd integration && go test -run XXX -bench Compare -benchmem -count 6 ./bench
bench: services
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/benchtable

## bench-delivery: the delivery module's table (EnqueueTx overhead on a business transaction
## beside River's InsertTx and hand-written rows; delivery throughput to a no-op and to a dedupehttp
## receiver beside the receiver alone), about 4 minutes on 2 cores.
.PHONY: bench-delivery
bench-delivery: services
	@$(WITH_SERVICES) && cd delivery && $(GO) run ./internal/cmd/deliverybench -duration 2s

## failover: only the failover tests (primary + streaming standby, primary killed, standby
## promoted), verbose so they print what they measured; `make test` runs them too.
.PHONY: failover
failover: services
	@$(WITH_SERVICES) && cd integration && $(GO) test -race -count=1 -v -run '^TestFailover' .

## soak-failover: the soak on a primary + synchronous standby of its own, the primary killed a
## third of the way through and the standby promoted; the checker reads the new primary.
.PHONY: soak-failover
soak-failover: services
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/soak -duration $(SOAK_DURATION) -clients 32 -failover sync

## bench-volume: the dedupe table at volume, default and generations layouts side by side
## (integration/cmd/benchvolume): claim throughput at 10M keys against an empty table, removing
## 10M expired keys with writers running, sizes across three fill/expire/purge cycles. About
## 10 minutes on 2 cores; BENCH_VOLUME_FLAGS="-rows 1000000" for a quicker look.
.PHONY: bench-volume
bench-volume: services
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/benchvolume $(BENCH_VOLUME_FLAGS)

## bench-volume-nodiscard: the purge phase of bench-volume (generations layout) with the tables
## in a tablespace on a file system mounted without `discard` (scripts/nodiscard-tablespace.sh: a
## loop-mounted ext4 image; root). This machine kind mounts / with `discard`, which trims every
## freed block at once and makes truncating a 1 GB file take 0.4 s instead of 0.07 s. About 3 min.
.PHONY: bench-volume-nodiscard
bench-volume-nodiscard: services
	@scripts/nodiscard-tablespace.sh
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/benchvolume -phases purge -layouts generations \
		-tablespace pgonce_nodiscard -baseline 8s $(BENCH_VOLUME_FLAGS)

## soak-generations: the soak on the generations layout of dedupe (rotated twice during the run,
## the keys of the truncated generation saved for the checker), without Redis so that every
## request claims in PostgreSQL.
.PHONY: soak-generations
soak-generations: services
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/soak -duration $(SOAK_DURATION) -clients 16 \
		-redis=false -layout generations

## bench-flow: the three-step request (local, foreign, local) through flow and DBOS Transact
## side by side (integration/cmd/benchflow), then DBOS's queue mode against flow; about 2
## minutes on 2 cores. For benchstat: cd integration && go test -run XXX -bench FlowVsDBOS ./bench
.PHONY: bench-flow
bench-flow: services
	@$(WITH_SERVICES) && cd integration && $(GO) run ./cmd/benchflow -profile 200 && \
		echo && $(GO) run ./cmd/benchflow -queue -only '^(flow|dbos-queue)$$' -rounds 1
