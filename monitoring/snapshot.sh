#!/usr/bin/env bash
# Draws the Grafana dashboard (monitoring/grafana/pubsubkafka.json) from a
# real run into docs/dashboard.svg: `pubsubkafka dev`, the lag exporter and a
# Prometheus scraping them, a few minutes of traffic (orders, their changes,
# refused requests, dead letters, reads), then every panel's queries. Prints
# the panels that had no data; --check exits 1 when one that should have had.
# Takes about three minutes. Uses Debian's prometheus, unpacked under .tools/
# when it is not on PATH.
#
#   monitoring/snapshot.sh [--check] [--out FILE] [--seconds N]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin pubsubkafka
prometheus=$(scripts/debian-tool.sh prometheus prometheus)
PYTHONDONTWRITEBYTECODE=1 exec python3 monitoring/snapshot.py --binary target/debug/pubsubkafka --prometheus "$prometheus" "$@"
