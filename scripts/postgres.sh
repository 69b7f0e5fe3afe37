#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432, starting the
# local cluster if it is installed and down. With TEST_DATABASE_SERVER set,
# that server is used instead and nothing is started.
set -euo pipefail
if [ -n "${TEST_DATABASE_SERVER:-}" ]; then
    exit 0
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | head -n1)
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
    else
        echo "PostgreSQL is not running and no local cluster is installed;" >&2
        echo "set TEST_DATABASE_SERVER=postgres://user@host:port to a server where tests may create databases" >&2
        exit 1
    fi
fi
pg_isready -h 127.0.0.1 -p 5432
