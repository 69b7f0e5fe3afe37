#!/usr/bin/env bash
# Runs every test of the project, setting up what the tests need on this
# machine first: a PostgreSQL server on 127.0.0.1:5432 (a private one,
# installed and started when none answers), the brokers of the end-to-end
# suite and the benchmark smoke run (Apache Kafka from Maven Central, and the
# Tansu memory broker of the fast tier), the benchmark's peers (Kafka
# Connect with Debezium's JDBC sink, and Apache Camel as an HTTP bridge, both
# from Maven Central), Debian's Chromium and the pinned
# playwright-core of the console's browser test, and the tools of the deployment
# and monitoring checks (installed under .tools/).
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> %s\n' "$*"; }

section "PostgreSQL on 127.0.0.1:5432"
./scripts/postgres.sh

section "formatting"
cargo fmt --all --check

section "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

section "SQL of the store crate checked against the migrations"
./scripts/check-queries.sh

section "Apache Kafka for the end-to-end suite (from Maven Central)"
./scripts/install-kafka.sh

section "Tansu memory broker for the fast tier of the end-to-end suite"
./scripts/install-tansu.sh

section "Kafka Connect and an HTTP bridge for the benchmark's comparisons (from Maven Central)"
./scripts/install-connect.sh
./scripts/install-bridge.sh

section "Chromium and playwright-core for the console's browser test"
./scripts/install-browser.sh

section "service binaries for the end-to-end suite and the benchmark smoke run"
cargo build --locked --bins

section "cargo tests"
cargo test --workspace --locked

# Not run here (they need cargo-fuzz and sanitizer builds; see README.md,
# "Hostile input"), but kept compiling against the contract they exercise.
section "fuzz targets compile"
CARGO_TARGET_DIR=target/fuzz cargo check --manifest-path fuzz/Cargo.toml --locked --bins

section "benchmark smoke run on Apache Kafka, peers included (checks the harness works; asserts no timing)"
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
