#!/usr/bin/env bash
# Runs every test of the project, setting up what the tests need on this
# machine first: the local PostgreSQL server (started if it is down), the
# Tansu broker of the end-to-end suite and the tools of the deployment and
# monitoring checks (installed under .tools/).
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> %s\n' "$*"; }

section "PostgreSQL on 127.0.0.1:5432"
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    else
        echo "PostgreSQL is not running and no local cluster is installed;" >&2
        echo "set TEST_DATABASE_SERVER=postgres://user@host:port to a server where tests may create databases" >&2
        exit 1
    fi
fi
pg_isready -h 127.0.0.1 -p 5432

section "formatting"
cargo fmt --all --check

section "Tansu broker for the end-to-end suite"
./scripts/install-tansu.sh

section "service binaries for the end-to-end suite"
cargo build --locked --bins

section "cargo tests"
cargo test --workspace --locked

for check in monitoring/check.sh deploy/check.sh; do
    if [ -f "$check" ]; then
        section "$check"
        bash "$check"
    fi
done
