#!/usr/bin/env bash
# Installs Apache Kafka for the end-to-end suite: the broker's jars and
# their runtime dependencies from Maven Central (harness/kafka/pom.xml), the
# same set as the distribution's libs/, at .tools/kafka/libs, and the
# harness's ACL tool (harness/kafka/Acls.java) compiled against them at
# .tools/kafka/classes. The jars are also kept in a cache outside the
# checkout ($PUBSUBKAFKA_CACHE, default ~/.cache/pubsubkafka) and copied from
# there by later checkouts on the same machine. Needs Java 17 or later and
# Maven on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cache.sh
source scripts/cache.sh

# The broker version the project is tested against; docker-compose.yml, the
# Kubernetes examples and README.md name the same.
version=4.1.1
dest=.tools/kafka
cache=$(realpath -m "${PUBSUBKAFKA_CACHE:-$HOME/.cache/pubsubkafka}/kafka-$version")

for tool in java javac mvn; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is not on PATH: Apache Kafka needs a JDK 17 or later and Maven" >&2
        exit 1
    fi
done

if [ ! -f "$cache/libs/kafka_2.13-$version.jar" ]; then
    echo "fetching Apache Kafka $version and its dependencies from Maven Central"
    fill_cache "$cache" mvn -q -B -Dstyle.color=never -f harness/kafka/pom.xml -Dkafka.version="$version" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache.partial/libs"
fi

# A copy without the broker's jar (removed by hand, say) is installed again.
[ -f "$dest/libs/kafka_2.13-$version.jar" ] || rm -f "$dest/VERSION"
install_stamped "$dest" "$version" cp -r "$cache/libs" "$dest/libs"
cp harness/kafka/log4j2.yaml harness/kafka/log4j2-tools.yaml "$dest/"
if [ ! -f "$dest/classes/Acls.class" ] || [ harness/kafka/Acls.java -nt "$dest/classes/Acls.class" ]; then
    rm -rf "$dest/classes"
    javac -d "$dest/classes" -cp "$dest/libs/*" harness/kafka/Acls.java
fi
echo "Apache Kafka $(java -cp "$dest/libs/*" kafka.Kafka --version 2>/dev/null) at $dest ($(java -version 2>&1 | head -n1))"
