#!/usr/bin/env bash
# Makes sure the storage server of the durable Tansu brokers answers on
# 127.0.0.1:5433: the PostgreSQL 17 that scripts/install-durable-tansu.sh
# installs, initialised on first use in a scratch directory and started if
# it is down. PostgreSQL will not run as root, so as root it runs as the
# postgres user, from a copy it can read. With TANSU_STORAGE_SERVER set,
# that server (PostgreSQL 16 or later) is used instead and nothing is
# started. `scripts/tansu-storage.sh stop` stops the server started here.
set -euo pipefail
cd "$(dirname "$0")/.."

port=5433
run=${TMPDIR:-/tmp}/pubsubkafka-tansu-storage
if [ -n "${TANSU_STORAGE_SERVER:-}" ]; then
    exit 0
fi
if [ ! -x .tools/postgresql-17/bin/postgres ]; then
    echo "PostgreSQL 17 is not installed: run scripts/install-durable-tansu.sh first" >&2
    exit 1
fi

as_owner=()
if [[ $EUID -eq 0 ]]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "running as root and there is no postgres user to run PostgreSQL as;" >&2
        echo "set TANSU_STORAGE_SERVER=postgres://user@host:port to a PostgreSQL 16+ server" >&2
        exit 1
    fi
    as_owner=(runuser -u postgres --)
fi
pg_ctl() { "${as_owner[@]}" "$run/pg/bin/pg_ctl" -D "$run/data" "$@"; }

if [ "${1:-}" = stop ]; then
    [ -d "$run/data" ] && pg_ctl stop -m fast
    exit 0
fi

if [ ! -x "$run/pg/bin/postgres" ]; then
    mkdir -p "$run"
    rm -rf "$run/pg"
    cp -a .tools/postgresql-17 "$run/pg"
fi
if [ ! -f "$run/data/PG_VERSION" ]; then
    rm -rf "$run/data"
    mkdir -p "$run/data"
    [[ $EUID -eq 0 ]] && chown -R postgres "$run"
    "${as_owner[@]}" "$run/pg/bin/initdb" -D "$run/data" -U postgres --auth=trust \
        -E UTF8 --locale=C >"$run/initdb.log"
fi
[[ $EUID -eq 0 ]] && chown -R postgres "$run"
if ! pg_ctl status >/dev/null 2>&1; then
    pg_ctl start -w -l "$run/server.log" \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$run -c max_connections=300" \
        >/dev/null
fi
# Not piped into head: head exiting first would fail the pipe (pipefail).
status=$(pg_ctl status)
head -n1 <<<"$status"
