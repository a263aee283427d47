# Two commands matter: `make run` (the local stack with items-api) and `make test` (everything).
# Both install what is missing first (see scripts/deps.sh).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Python tools (moto_server, cargo-lambda, cfn-lint) live in a virtual environment that
# scripts/deps.sh makes; every target finds them, and its python3, first.
TOOLS_BIN := $(CURDIR)/target/tools/py/bin
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: help deps test test-pg18 run rotate preflight revoke rotate-deployed failover lint fmt soak bench


help:
	@echo "make run      local Postgres + moto + items-api under cargo lambda watch (Ctrl-C stops all)"
	@echo "make test     every test, with its own throwaway stack"
	@echo "make preflight  every check of a rotation on the make-run secret, changing nothing"
	@echo "make rotate   rotate the make-run secret through the rotation function"
	@echo "make revoke [GRACE=s]  rotate the make-run secret now, then end the old password's sessions"
	@echo "make rotate-deployed SECRET=<arn> [FUNCTION=<fn>]  rotate a deployed secret now, stopping at the first failed step"
	@echo "make failover fail the make-run database over to its standby (FAILOVER_MODE=crash|demote, DNS_DELAY=s)"
	@echo "make bench    measure the release build, rewrite docs/benchmarks.md"
	@echo "make lint     rustfmt, clippy, cfn-lint"
	@echo "make build    Lambda zips (ARCH=arm64|x86_64)"
	@echo "make deploy   sam build + sam deploy (--guided the first time, then from infra/samconfig.toml)"

deps:
	@scripts/deps.sh

# Built workspace-wide so `cargo lambda watch` (which runs `cargo run --bin <function>` at the
# workspace root) reuses these artifacts instead of compiling another feature set.
run: deps
	cargo build --workspace --bins
	cargo run -q --bin devstack -- run

rotate:
	cargo run -q --bin devstack -- rotate

# Beside `make run`: the rotation function's {"Preflight"} and, after an immediate rotation, its
# {"Revoke"} (docs/rotation-runbook.md, "Before the first rotation" and "A password leaked").
preflight:
	cargo run -q --bin devstack -- preflight

GRACE ?= 0
revoke:
	cargo run -q --bin devstack -- revoke --grace $(GRACE)

# A deployed stack's secret, now: the four steps one at a time through the deployed rotation
# function, stopping at the first failure (docs/rotation-runbook.md#rotate-now). Uses the AWS CLI
# and credentials of your shell, not the devstack's tools.
rotate-deployed:
	@test -n "$(SECRET)" || { echo "usage: make rotate-deployed SECRET=<secret ARN> [FUNCTION=<rotation function>]" >&2; exit 2; }
	@PATH="$(subst $(TOOLS_BIN):,,$(PATH))" scripts/rotate-deployed.sh "$(SECRET)" "$(FUNCTION)"

# Beside `make run`, in another terminal: see docs/failover.md.
FAILOVER_MODE ?= crash
DNS_DELAY ?= 2
DEMOTED_FOR ?= 10
failover:
	cargo run -q --bin devstack -- failover --mode $(FAILOVER_MODE) --dns-delay $(DNS_DELAY) --demoted-for $(DEMOTED_FOR)

# Every secret the tests create or send and every log they produce go to $(EVIDENCE); the leak
# check then proves no form of any secret reached any log, and that every suite left the logs
# tests/evidence-manifest.txt lists for it.
EVIDENCE := $(CURDIR)/target/evidence
MANIFEST := $(CURDIR)/tests/evidence-manifest.txt

# The workspace build unifies the e2e tests' `failpoints` feature into every rotation build, which
# compiles out the proof that builds without it never stop; rotation alone is built without it
# (a second build of the rotation crate only), and the step fails unless that test ran and passed.
test: deps test-infra
	rm -rf $(EVIDENCE)
	DEVSTACK_EVIDENCE_DIR=$(EVIDENCE) cargo test --workspace
	$(MAKE) test-pg18
	cargo test -p rotation --lib failpoint 2>&1 | tee target/failpoints-off.log
	grep -q '^test failpoint::tests::without_the_feature_nothing_fires ... ok$$' target/failpoints-off.log
	cargo run -q --bin devstack -- leak-check $(EVIDENCE) --manifest $(MANIFEST)

# The rotation and db-credentials integration suites again (the two test targets named
# `integration`), on Postgres 18 (npm build) with an RDS-like master (CREATEROLE, a member of
# rds_superuser, not superuser). --workspace keeps the feature set of `cargo test --workspace`, so
# the binaries it just built are run again, not rebuilt (-p rotation -p db-credentials would
# resolve features anew and recompile three crates, ~1.5 minutes).
test-pg18: deps
	DEVSTACK_EVIDENCE_DIR=$(EVIDENCE) DEVSTACK_POSTGRES=18 DEVSTACK_MASTER=rds \
	  cargo test --workspace --no-fail-fast --test integration

# The long variants of the proofs: 100 rotations per strategy under load, 10 failovers back to
# back under load, 20,000 property cases.
soak: deps
	rm -rf $(EVIDENCE)-soak
	DEVSTACK_EVIDENCE_DIR=$(EVIDENCE)-soak E2E_ROTATIONS=100 E2E_CLIENTS=8 \
	  cargo test --workspace --test rotation_under_load -- --nocapture
	DEVSTACK_EVIDENCE_DIR=$(EVIDENCE)-soak E2E_FAILOVERS=10 \
	  cargo test --workspace --test failover -- --nocapture a_failover_under_load
	ITEMS_PROPERTY_CASES=20000 cargo test --workspace --test properties -- --nocapture
	cargo run -q --bin devstack -- leak-check $(EVIDENCE)-soak --manifest $(MANIFEST) --suite e2e.rotation_under_load

# Measurements, never assertions: the shipped x86_64 release binaries on the devstack; rewrites
# docs/benchmarks.md and docs/benchmarks/*.svg. BENCH_QUICK=1 tries the harness in a minute.
bench: deps
	$(MAKE) build ARCH=x86_64
	cargo build --profile bench -p e2e --features vendored-openssl --example cold-floor --example warm-floor
	cargo bench -p e2e --features vendored-openssl --bench lambda

lint: deps lint-infra
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

-include infra/infra.mk
