# Digital Workspace — the developer entry points. `make` alone lists them.
#
#   make run    set up Postgres + NATS, build, start every service, seed the demo tenant
#   make test   set up Postgres + NATS, run the whole test suite and the manifest checks
#   make fuzz   the property-based fuzz targets (tests/fuzz_*.rs) with many more cases
#
# Variables: CARGO (cargo), TEST_ARGS (extra `cargo test` arguments, e.g. TEST_ARGS='-- --nocapture'),
# FUZZ_CASES (cases per property for `make fuzz`),
# and the environment documented in scripts/run-cluster.sh and scripts/lib.sh.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
TEST_ARGS ?=
FUZZ_CASES ?= 20000

export CARGO_TERM_COLOR ?= auto
export RUST_BACKTRACE ?= 1
# The test suite's servers (tests create random dwtest_* databases and TEST_* streams there).
export DW_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export DW_TEST_NATS_URL ?= nats://127.0.0.1:4222

.PHONY: help run deps dbs build test test-only fuzz lint fmt bench deploy-check clean clean-test-dbs ci

help: ## Show this help
	@echo "Digital Workspace — make targets:"
	@if [[ -t 1 && -z "$${NO_COLOR:-}" ]]; then on=$$'\e[36m' off=$$'\e[0m'; else on= off=; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN { FS = ":.*## " } \
		/^[a-zA-Z_-]+:.*## / { printf "  %s%-15s%s %s\n", on, $$1, off, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo "Start with 'make run' (local cluster + demo tenant) or 'make test'."

deps: ## Install/start PostgreSQL and NATS (JetStream) when needed, check the Rust toolchain, create the databases
	@scripts/deps.sh
	@scripts/create-dbs.sh

dbs: ## Create the service databases when absent
	@scripts/create-dbs.sh

run: deps ## Set up, build, run every service with the demo tenant seeded (foreground; Ctrl-C stops)
	@scripts/run-cluster.sh

build: ## Build the whole workspace (debug)
	$(CARGO) build --workspace

test: deps ## Set up Postgres and NATS, then run the whole test suite and deploy-check
	@$(MAKE) test-only

test-only: ## The test suite without the set-up (Postgres and NATS must answer)
	@scripts/clean-test-dbs.sh
	@# The binaries first: end-to-end tests start the real service binaries from the target dir.
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace $(TEST_ARGS)
	@$(MAKE) deploy-check

fuzz: deps ## The property-based fuzz targets (tests/fuzz_*.rs) with FUZZ_CASES cases each (20000)
	@# New failures are saved in each crate's tests/fuzz-regressions/: commit them, they replay first.
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --workspace --test 'fuzz_*' $(TEST_ARGS)

lint: ## rustfmt check and clippy with warnings denied, buf lint + breaking on proto/ (plus a syntax check of the scripts)
	@scripts/deps.sh --toolchain-only
	@for f in scripts/*.sh .ci/run; do bash -n "$$f" || exit 1; done
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck -x scripts/*.sh .ci/run; fi
	@scripts/proto-check.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code (rustfmt)
	$(CARGO) fmt --all

BENCH_SUMMARY := $(CURDIR)/target/bench-summary.txt
BENCH_LOAD_TASKS ?= 20000
BENCH := DW_BENCH_SUMMARY=$(BENCH_SUMMARY) $(CARGO) bench

bench: ## Run the benchmarks: agent commands, tenant fair share, read-model rebuild, projection consume rate, task assignment, SearchProtocols, template sends, Web Push, start-up time and idle memory, commit → JetStream across replicas (BENCH_* knobs), then a summary table with the ratios to the raw limits
	@mkdir -p target && rm -f $(BENCH_SUMMARY)
	@# What earlier runs left (the benches' databases, older than 30 min and unused), as make test does.
	@scripts/clean-test-dbs.sh
	$(BENCH) -p agent-sessions --bench commands
	$(BENCH) -p agent-sessions --bench fair_share
	$(BENCH) -p agent-sessions --bench rebuild
	$(BENCH) -p dw-bus --bench consume
	$(BENCH) -p task-distribution --bench distribution
	@echo; echo "== task assignment spread over 10 tenants (200 agents each) =="
	BENCH_TENANTS=10 BENCH_RATE=1000 BENCH_SKIP=search $(BENCH) -p task-distribution --bench distribution
	@echo; echo "== task-distribution invariants at $(BENCH_LOAD_TASKS) tasks: two replicas, 200 agents (release) =="
	DW_TEST_LOAD_TASKS=$(BENCH_LOAD_TASKS) $(CARGO) test --release -p task-distribution --test concurrency -- --nocapture
	$(BENCH) -p messaging-templates --bench sends
	$(BENCH) -p notifications --bench push
	$(CARGO) build --release --bins
	$(BENCH) -p integration-tests --bench startup
	$(BENCH) -p integration-tests --bench replicas
	@echo; echo "== summary: each figure beside the raw limit of the same shape measured in the same run (or the reference named), ratio 1.00 = the limit =="
	@printf '%-14s %-44s %12s %-10s %12s %6s\n' bench figure value unit raw/ref ratio
	@cat $(BENCH_SUMMARY)

deploy-check: ## Render the Kustomize overlays and deploy/postgres, validate them offline (schemas incl. CRDs + policy)
	@scripts/deploy-check.sh

clean-test-dbs: ## Drop dwtest_* databases (and TEST_* streams) left by interrupted test runs
	@scripts/clean-test-dbs.sh

clean: ## Remove build output (cargo clean) and the local state in .dw/
	$(CARGO) clean
	rm -rf .dw

ci: ## What CI runs: lint, then test
	@$(MAKE) lint
	@$(MAKE) test
