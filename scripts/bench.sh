#!/usr/bin/env bash
# Runs the benchmarks: builds the release binaries, installs the Tansu
# broker, makes sure the local PostgreSQL runs, then prints the figures
# (Markdown) on stdout. Arguments go to the harness: `--help` lists them,
# `--smoke` is a quick check that every benchmark works.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/postgres.sh >&2
./scripts/install-tansu.sh >&2
cargo build --release --locked --bins >&2
exec ./target/release/bench "$@"
