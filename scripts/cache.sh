# shellcheck shell=bash
# Sourced by the install scripts (not run): how they keep what they fetch in
# a cache outside the checkout ($PUBSUBKAFKA_CACHE, default
# ~/.cache/pubsubkafka) and install it into .tools/ once per version.

# fill_cache DIR COMMAND [ARG...]: runs COMMAND, which fills DIR.partial
# (made empty first), then puts DIR.partial in DIR's place: a failed or
# interrupted fetch leaves DIR as it was.
fill_cache() {
    local dir=$1
    shift
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial"
    "$@"
    rm -rf "$dir"
    mv "$dir.partial" "$dir"
}

# install_stamped DEST STAMP COMMAND [ARG...]: unless DEST/VERSION says
# STAMP already, empties DEST, runs COMMAND (which fills DEST), then writes
# STAMP to DEST/VERSION.
install_stamped() {
    local dest=$1 stamp=$2
    shift 2
    if [ "$(cat "$dest/VERSION" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$dest"
        mkdir -p "$dest"
        "$@"
        echo "$stamp" >"$dest/VERSION"
    fi
}
