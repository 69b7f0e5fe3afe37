#!/usr/bin/env bash
# Prints the absolute path of a program the checks and tests run, taken from
# PATH when it is installed there, otherwise unpacked from its Debian package
# into .tools/<package>/ (nothing is installed system-wide or started).
#
#   scripts/debian-tool.sh PROGRAM PACKAGE [--no-path]
#
# --no-path ignores PATH (for a program whose packaged version the project
# relies on), as does PUBSUBKAFKA_IGNORE_PATH=1 for every program (the test
# command uses it to run the installing path on any machine). Progress goes
# to stderr; stdout is the path only.
set -euo pipefail
cd "$(dirname "$0")/.."

if (($# < 2)); then
    echo "usage: scripts/debian-tool.sh PROGRAM PACKAGE [--no-path]" >&2
    exit 2
fi
program=$1
package=$2

if [[ ${3:-} != --no-path && ${PUBSUBKAFKA_IGNORE_PATH:-} != 1 ]] && found=$(command -v "$program"); then
    # A relative PATH entry would break callers that change directory.
    realpath "$found"
    exit 0
fi

dest=$PWD/.tools/$package
binary=$dest/usr/bin/$program
if [[ ! -x $binary ]]; then
    debs=$(mktemp -d)
    trap 'rm -rf "$debs"' EXIT
    download=(apt-get download -q)
    [[ $EUID -eq 0 ]] && download+=(-o APT::Sandbox::User=root)
    if ! (cd "$debs" && "${download[@]}" "$package" >/dev/null 2>&1); then
        echo "apt-get download $package failed; updating the package lists" >&2
        if [[ $EUID -eq 0 ]]; then apt-get update -qq; else sudo apt-get update -qq; fi
        (cd "$debs" && "${download[@]}" "$package" >/dev/null)
    fi
    rm -rf "$dest"
    dpkg-deb -x "$debs/${package}"_*.deb "$dest"
fi
if [[ ! -x $binary ]]; then
    echo "Debian's $package has no usr/bin/$program" >&2
    exit 1
fi
echo "$binary"
