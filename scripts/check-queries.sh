#!/usr/bin/env bash
# Checks the SQL of the `store` crate's query macros (`sqlx::query!` and
# friends) against a fresh database made from the migrations, so that a
# migration that breaks a statement fails here, at compile time. With
# `--prepare`, it also rewrites the query data in `.sqlx/` that every other
# build compiles against (SQLX_OFFLINE, see .cargo/config.toml): run it after
# changing a statement or a migration, and commit `.sqlx/`.
#
# Needs the PostgreSQL server of scripts/postgres.sh (or TEST_DATABASE_SERVER).
set -euo pipefail
cd "$(dirname "$0")/.."

server=${TEST_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
database=pubsubkafka_queries_$$
url="$server/$database"
psql_admin() { psql -q -v ON_ERROR_STOP=1 -d "$server/postgres" "$@"; }
cleanup() { psql_admin -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true; }
trap cleanup EXIT

psql_admin -c "CREATE DATABASE $database"
for migration in store/migrations/read_model/*.sql store/migrations/outbox/*.sql; do
    psql -q -v ON_ERROR_STOP=1 -d "$url" -f "$migration" >/dev/null
done

offline_dir=()
if [ "${1:-}" = --prepare ]; then
    rm -rf .sqlx && mkdir .sqlx
    offline_dir=(SQLX_OFFLINE_DIR="$PWD/.sqlx")
    # The macros write their data only when they run: make cargo expand
    # them again even if this build of the crate is up to date.
    touch store/src/*.rs
fi
# The `check-queries` feature gives this check a build of `store` of its
# own, so the macros run against the database even when the usual build of
# `store` is up to date.
env SQLX_OFFLINE=false DATABASE_URL="$url" "${offline_dir[@]}" \
    cargo check --locked -p store --features check-queries
if [ "${1:-}" = --prepare ]; then
    echo "query data written to .sqlx/ ($(find .sqlx -name 'query-*.json' | wc -l) statements)"
fi
