#!/usr/bin/env bash
# Runs the benchmarks: builds the release binaries, installs Apache Kafka
# (the reference broker, three nodes on this machine) and the Tansu memory
# broker (`--broker tansu`, for quick runs), makes sure the local
# PostgreSQL runs, then prints the figures
# (Markdown) on stdout. Arguments go to the harness: `--help` lists them,
# `--smoke` is a quick check that every benchmark works.
#
# `--summary` (this script's own flag) also records the run's results in
# bench/results.json and regenerates from them the summary at the top of
# bench/RESULTS.md and its chart, bench/summary.svg. Use it on a full run.
set -euo pipefail
cd "$(dirname "$0")/.."
summary=false
args=()
for arg in "$@"; do
  if [ "$arg" = --summary ]; then summary=true; else args+=("$arg"); fi
done
./scripts/postgres.sh >&2
./scripts/install-kafka.sh >&2
./scripts/install-tansu.sh >&2
./scripts/install-connect.sh >&2
./scripts/install-bridge.sh >&2
cargo build --release --locked --bins >&2
if ! "$summary"; then
  exec ./target/release/bench "${args[@]}"
fi
# Written beside the committed results first, so a failed run leaves them as they were.
trap 'rm -f bench/results.json.new' EXIT
./target/release/bench --results bench/results.json.new "${args[@]}"
mv bench/results.json.new bench/results.json
./target/release/bench summary bench/results.json --svg bench/summary.svg --update bench/RESULTS.md
echo "summary of this run written to bench/RESULTS.md and bench/summary.svg" >&2
