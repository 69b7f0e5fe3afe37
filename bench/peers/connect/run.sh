#!/usr/bin/env bash
# Runs the Kafka Connect peer once, end to end, on this machine: a
# plaintext single-node Apache Kafka (broker.properties), the project's
# producer publishing ORDERS orders (JSON, as in production) to `orders`,
# a scratch database (DATABASE, dropped first) with table.sql (and, with
# READ_MODEL=1, the consumer's migrations and read-model.sql), and a
# standalone Connect worker (worker.properties) running the Debezium JDBC
# sink (jdbc-sink.properties) until every order is stored. Prints rows and
# seconds; stops what it started. Not a benchmark: see README.md.
# Needs scripts/install-kafka.sh, scripts/install-connect.sh,
# `cargo build --bins` and PostgreSQL on 127.0.0.1:5432 (scripts/postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=bench/peers/connect
orders=${ORDERS:-5000}
database=${DATABASE:-connect_peer}
run=$(mktemp -d "${TMPDIR:-/tmp}/connect-peer.XXXXXX")
kafka=.tools/kafka
connect=.tools/connect
pids=()
# Stops what started, the last first (the worker before the broker).
stop() {
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    echo "logs in $run"
}
trap stop EXIT

# wait_for SECONDS COMMAND...: runs COMMAND until it succeeds, or fails.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "timed out waiting for: $*" >&2
            exit 1
        fi
        sleep 0.2
    done
}
tool() { java -Dlog4j2.configurationFile="$kafka/log4j2-tools.yaml" -cp "$kafka/libs/*" "$@"; }
sql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
stored() { [ "$(sql -d "$database" -tAc 'SELECT count(*) FROM connect_orders')" -ge "$orders" ]; }

cp "$here/broker.properties" "$run/broker.properties"
echo "log.dirs=$run/kafka-data" >>"$run/broker.properties"
tool kafka.tools.StorageTool format --config "$run/broker.properties" \
    --cluster-id="$(tool kafka.tools.StorageTool random-uuid)" >/dev/null
java -Dlog4j2.configurationFile="$kafka/log4j2.yaml" -cp "$kafka/libs/*" kafka.Kafka \
    "$run/broker.properties" >"$run/broker.log" 2>&1 &
pids+=($!)
wait_for 60 grep -q "Kafka Server started" "$run/broker.log"
for topic in orders users; do
    tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:39092 \
        --create --topic "$topic" --partitions 6 >/dev/null
done

KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 PRODUCER_HTTP_ADDR=127.0.0.1:38080 \
    MAX_BATCH_ITEMS=1000 LOG_FORMAT=text ./target/debug/producer >"$run/producer.log" 2>&1 &
pids+=($!)
wait_for 30 curl -sf http://127.0.0.1:38080/readyz
for ((sent = 0; sent < orders; sent += 1000)); do
    "$here/orders-batch.py" "$((orders - sent < 1000 ? orders - sent : 1000))" |
        curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @- \
            http://127.0.0.1:38080/orders/batch
done

sql -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
sql -d "$database" -f "$here/table.sql"
if [ "${READ_MODEL:-0}" = 1 ]; then
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database" LOG_FORMAT=text \
        ./target/debug/consumer migrate >"$run/migrate.log" 2>&1
    sql -d "$database" -f "$here/read-model.sql"
fi
sed -e "s#^plugin.path=.*#plugin.path=$PWD/$connect/plugins#" \
    -e "s#^offset.storage.file.filename=.*#offset.storage.file.filename=$run/connect.offsets#" \
    "$here/worker.properties" >"$run/worker.properties"
sed -e "s#/connect_peer?#/$database?#" "$here/jdbc-sink.properties" >"$run/jdbc-sink.properties"
start=$SECONDS
# connect-standalone.sh's heap, as bench/src/connect.rs gives it.
java -Xms256M -Xmx2G -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$connect/libs/*" \
    org.apache.kafka.connect.cli.ConnectStandalone "$run/worker.properties" \
    "$run/jdbc-sink.properties" >"$run/connect.log" 2>&1 &
pids+=($!)
wait_for 300 stored
echo "$orders orders stored by the JDBC sink in $((SECONDS - start)) s (worker start-up included)"
sql -d "$database" -c "SELECT count(*) AS connect_orders FROM connect_orders"
