#!/usr/bin/env bash
# Makes sure a PostgreSQL server the tests may use answers on 127.0.0.1:5432:
# the `postgres` role, no password, allowed to create databases.
#
# When nothing answers there, it runs a private cluster of its own: the
# server binaries of Debian's PostgreSQL package (installed with apt-get when
# they are missing), a cluster made with initdb in a scratch directory with
# trust authentication on loopback only, started on 127.0.0.1:5432 (as root,
# it runs as the `postgres` user, which PostgreSQL requires). The packaged
# cluster of the machine is not used or changed: its pg_hba.conf asks TCP
# clients for passwords.
#
# With TEST_DATABASE_SERVER set, that server is used instead and nothing is
# started. `scripts/postgres.sh stop` stops the server started here.
set -euo pipefail

port=5432
run=${TMPDIR:-/tmp}/pubsubkafka-postgres
if [ -n "${TEST_DATABASE_SERVER:-}" ]; then
    exit 0
fi

# The newest installed server's bin folder, or nothing.
server_bin() {
    local found
    found=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | sort -V | tail -n1)
    [ -n "$found" ] && dirname "$found"
}

as_owner=()
if [[ $EUID -eq 0 ]]; then
    as_owner=(runuser -u postgres --)
fi
pg_ctl() { "${as_owner[@]}" "$bin/pg_ctl" -D "$run/data" "$@"; }

if [ "${1:-}" = stop ]; then
    bin=$(server_bin) || exit 0
    if [ -f "$run/data/postmaster.pid" ]; then pg_ctl stop -m fast; fi
    exit 0
fi

answers() { pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; }

if ! command -v pg_isready >/dev/null || ! server_bin >/dev/null; then
    echo "PostgreSQL's server is not installed: installing Debian's postgresql package"
    sudo=()
    [[ $EUID -ne 0 ]] && sudo=(sudo)
    # Installing the package must not start (or create) the packaged cluster.
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o Dpkg::Options::=--force-confdef postgresql >/dev/null
    # Debian's package starts its own cluster on 5432 where it can: stop it,
    # so the private cluster below is the one tests meet.
    if command -v pg_lsclusters >/dev/null; then
        while read -r version cluster _; do
            "${sudo[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop 2>/dev/null || true
        done < <(pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online"')
    fi
fi
bin=$(server_bin) || {
    echo "no PostgreSQL server binaries under /usr/lib/postgresql after installing" >&2
    exit 1
}

if ! answers; then
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        echo "running as root and there is no postgres user to run PostgreSQL as;" >&2
        echo "set TEST_DATABASE_SERVER=postgres://user@host:port to a server where tests may create databases" >&2
        exit 1
    fi
    if [ ! -f "$run/data/PG_VERSION" ] || [ "$(cat "$run/data/PG_VERSION")" != "$("$bin/postgres" --version | grep -oE '[0-9]+' | head -n1)" ]; then
        rm -rf "$run"
        mkdir -p "$run/data"
        [[ $EUID -eq 0 ]] && chown -R postgres "$run"
        "${as_owner[@]}" "$bin/initdb" -D "$run/data" -U postgres --auth=trust \
            -E UTF8 --locale=C.UTF-8 >"$run/initdb.log"
    fi
    [[ $EUID -eq 0 ]] && chown -R postgres "$run"
    # Tests run many pools at once: room for their connections.
    pg_ctl start -w -t 60 -l "$run/server.log" \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$run -c max_connections=300 -c shared_buffers=256MB" \
        >/dev/null || {
        echo "PostgreSQL did not start; its log ($run/server.log) ends:" >&2
        tail -n 20 "$run/server.log" >&2
        exit 1
    }
fi

# Not `pg_isready` alone: a server that answers but asks for a password (the
# packaged cluster's defaults) is no use to the tests.
if ! psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -w -c 'SELECT 1' >/dev/null; then
    echo "a PostgreSQL server answers on 127.0.0.1:$port but the postgres role cannot log in" >&2
    echo "without a password: stop it, or set TEST_DATABASE_SERVER=postgres://user:password@host:port" >&2
    exit 1
fi
pg_isready -h 127.0.0.1 -p "$port"
