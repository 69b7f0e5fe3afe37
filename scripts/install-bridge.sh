#!/usr/bin/env bash
# Installs the HTTP-to-Kafka bridge the ingest benchmark compares with
# (bench/peers/bridge/README.md): Apache Camel's camel-main, YAML DSL,
# platform-http on Vert.x and camel-kafka, with their runtime dependencies,
# from Maven Central (bench/peers/bridge/pom.xml, every version from
# camel-bom), at .tools/bridge/libs. The jars are kept in the same cache as
# the broker's ($PUBSUBKAFKA_CACHE, default ~/.cache/pubsubkafka) and copied
# from there by later checkouts on the same machine. Needs Java 17 or later
# and Maven on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cache.sh
source scripts/cache.sh

# The pom names the Camel version: one place.
pom=bench/peers/bridge/pom.xml
version=$(sed -n 's:.*<camel.version>\(.*\)</camel.version>.*:\1:p' "$pom")
dest=.tools/bridge
cache=$(realpath -m "${PUBSUBKAFKA_CACHE:-$HOME/.cache/pubsubkafka}/camel-bridge-$version")

if [ -z "$version" ]; then
    echo "no camel.version in $pom" >&2
    exit 1
fi
for tool in java mvn; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is not on PATH: the Camel bridge needs a JDK 17 or later and Maven" >&2
        exit 1
    fi
done

# The pom's dependencies can change at the same Camel version: the cache
# keeps a digest of the pom it was resolved from.
digest=$(sha256sum "$pom" | cut -d' ' -f1)
# Fills the cache's next copy: the pom's runtime dependencies and its digest.
resolve() {
    mvn -q -B -Dstyle.color=never -f "$pom" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache.partial/libs"
    echo "$digest" >"$cache.partial/POM"
}
if [ ! -f "$cache/libs/camel-main-$version.jar" ] || [ "$(cat "$cache/POM" 2>/dev/null)" != "$digest" ]; then
    echo "fetching Apache Camel $version (main, YAML DSL, platform-http on Vert.x, Kafka) from Maven Central"
    fill_cache "$cache" resolve
fi

install_stamped "$dest" "$version $digest" cp -r "$cache/libs" "$dest/libs"
kafka=$(find "$dest/libs" -name 'kafka-clients-*.jar' -printf '%f\n' | sed 's/^kafka-clients-\(.*\)\.jar$/\1/')
echo "Apache Camel $version (Kafka client $kafka) at $dest ($(java -version 2>&1 | head -n1))"
