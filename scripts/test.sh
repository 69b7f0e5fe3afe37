#!/usr/bin/env bash
# Runs every test of the project, setting up what the tests need on this
# machine first: the local PostgreSQL server (started if it is down), the
# Tansu brokers of the end-to-end suite and the benchmark smoke run (memory
# storage, and a PostgreSQL-storage build with its own storage server), and
# the tools of the deployment and monitoring checks (installed under
# .tools/).
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> %s\n' "$*"; }

section "PostgreSQL on 127.0.0.1:5432"
./scripts/postgres.sh

section "formatting"
cargo fmt --all --check

section "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

section "Tansu broker for the end-to-end suite"
./scripts/install-tansu.sh

section "durable Tansu cluster: PostgreSQL-storage build, its storage server on 127.0.0.1:5433, stunnel"
./scripts/install-durable-tansu.sh
./scripts/tansu-storage.sh

section "service binaries for the end-to-end suite and the benchmark smoke run"
cargo build --locked --bins

section "cargo tests"
cargo test --workspace --locked

# Not run here (they need cargo-fuzz and sanitizer builds; see README.md,
# "Hostile input"), but kept compiling against the contract they exercise.
section "fuzz targets compile"
CARGO_TARGET_DIR=target/fuzz cargo check --manifest-path fuzz/Cargo.toml --locked --bins

section "benchmark smoke run (checks the harness works; asserts no timing)"
./target/debug/bench --smoke

# The check scripts take their tools from PATH when they are installed there,
# and install them into .tools/ otherwise: run the monitoring check both ways.
section "monitoring/check.sh, tools as if not on PATH (unpacked into .tools/)"
PUBSUBKAFKA_IGNORE_PATH=1 bash monitoring/check.sh

section "monitoring/check.sh, promtool on PATH"
PATH="$(dirname "$(scripts/debian-tool.sh promtool prometheus)"):$PATH" bash monitoring/check.sh

section "deploy/check.sh, tools as if not on PATH"
PUBSUBKAFKA_IGNORE_PATH=1 bash deploy/check.sh

section "deploy/check.sh, promtool on PATH"
PATH="$(dirname "$(scripts/debian-tool.sh promtool prometheus)"):$PATH" bash deploy/check.sh
