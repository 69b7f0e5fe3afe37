#!/usr/bin/env bash
# Installs a Kafka Connect worker and Debezium's JDBC sink connector for the
# comparison with Kafka Connect (bench/peers/connect/README.md): the worker's
# jars and their runtime dependencies from Maven Central
# (bench/peers/connect/runtime-pom.xml), at the broker version
# scripts/install-kafka.sh installs, at .tools/connect/libs; and the
# connector's plugin archive as Debezium publishes it on Maven Central (the
# connector, Hibernate, and the JDBC drivers, PostgreSQL's among them)
# unpacked at .tools/connect/plugins. Both are kept in the same cache as the
# broker's jars ($PUBSUBKAFKA_CACHE, default ~/.cache/pubsubkafka). Needs
# Java 17 or later and Maven on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cache.sh
source scripts/cache.sh

# The worker runs at the broker's version: one place names it.
version=$(sed -n 's/^version=//p' scripts/install-kafka.sh)
debezium=3.6.0.Final
dest=.tools/connect
root=$(realpath -m "${PUBSUBKAFKA_CACHE:-$HOME/.cache/pubsubkafka}")
runtime_cache=$root/connect-$version
plugin_cache=$root/debezium-connector-jdbc-$debezium

if [ -z "$version" ]; then
    echo "no broker version in scripts/install-kafka.sh" >&2
    exit 1
fi
for tool in java mvn tar; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is not on PATH: Kafka Connect needs a JDK 17 or later and Maven" >&2
        exit 1
    fi
done
mvn=(mvn -q -B -Dstyle.color=never)

# Fills the plugin cache's next copy: the archive as Debezium publishes
# it, unpacked.
fetch_plugin() {
    local archive=$plugin_cache.partial/debezium-connector-jdbc-$debezium-plugin.tar.gz
    "${mvn[@]}" dependency:copy -Dtransitive=false \
        -Dartifact="io.debezium:debezium-connector-jdbc:$debezium:tar.gz:plugin" \
        -DoutputDirectory="$plugin_cache.partial"
    tar -xzf "$archive" -C "$plugin_cache.partial"
    rm "$archive"
}

# Installs the worker's jars and the connector from the caches.
install() {
    mkdir -p "$dest/plugins"
    cp -r "$runtime_cache/libs" "$dest/libs"
    cp -r "$plugin_cache/debezium-connector-jdbc" "$dest/plugins/"
}

if [ ! -f "$runtime_cache/libs/connect-runtime-$version.jar" ]; then
    echo "fetching Kafka Connect $version and its dependencies from Maven Central"
    fill_cache "$runtime_cache" "${mvn[@]}" -f bench/peers/connect/runtime-pom.xml -Dkafka.version="$version" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$runtime_cache.partial/libs"
fi

if [ ! -f "$plugin_cache/debezium-connector-jdbc/debezium-connector-jdbc-$debezium.jar" ]; then
    echo "fetching Debezium's JDBC sink connector $debezium from Maven Central"
    fill_cache "$plugin_cache" fetch_plugin
fi

install_stamped "$dest" "$version $debezium" install
cp harness/kafka/log4j2.yaml "$dest/"
echo "Kafka Connect $version with Debezium JDBC sink $debezium at $dest ($(java -version 2>&1 | head -n1))"
