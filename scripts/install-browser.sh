#!/usr/bin/env bash
# Installs what the console's browser test drives: Debian's Chromium
# (/usr/bin/chromium, installed system-wide only when missing) and the pinned
# playwright-core of harness/browser/package-lock.json, into
# .tools/browser/node_modules (skipped when the installed lock matches).
# Playwright never downloads a browser of its own: it drives Debian's.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

if [[ ! -x /usr/bin/chromium ]]; then
    echo "installing Debian's chromium" >&2
    install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium)
    if ! as_root "${install[@]}" >/dev/null; then
        echo "apt-get install chromium failed; updating the package lists" >&2
        as_root apt-get update -qq
        as_root "${install[@]}" >/dev/null
    fi
fi
/usr/bin/chromium --version >&2 2>/dev/null || true

dest=.tools/browser
lock=harness/browser/package-lock.json
# The lock installed last is kept beside the modules: the same lock, nothing to do.
if cmp -s "$lock" "$dest/node_modules/.package-lock.json.installed" 2>/dev/null; then
    exit 0
fi
rm -rf "$dest"
mkdir -p "$dest"
cp harness/browser/package.json "$lock" "$dest/"
# Belt and braces: playwright-core has no install script, but never let it fetch a browser.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$dest" --no-audit --no-fund --ignore-scripts >&2
cp "$lock" "$dest/node_modules/.package-lock.json.installed"
