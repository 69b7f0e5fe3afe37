#!/usr/bin/env bash
# Checks the monitoring files: the alert rules parse and pass their unit
# tests (promtool), and every dashboard query names only metrics the
# services export. Uses promtool from PATH, or from Debian's package unpacked
# under .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."

promtool=$(scripts/debian-tool.sh promtool prometheus)

echo "promtool check rules monitoring/alerts.yml"
"$promtool" check rules monitoring/alerts.yml
echo "promtool test rules monitoring/alerts_test.yml"
(cd monitoring && "$promtool" test rules alerts_test.yml)

echo "dashboard: monitoring/grafana/pubsubkafka.json"
python3 - <<'PY'
import json, re, sys
exported = {
    "kafka_producer_messages_total", "kafka_producer_produce_duration_seconds_bucket",
    "kafka_producer_queue_depth", "kafka_producer_replaced_total", "http_requests_total", "http_request_duration_seconds_bucket",
    "kafka_consumer_messages_total", "kafka_dlq_messages_total",
    "kafka_processing_duration_seconds_bucket", "kafka_end_to_end_latency_seconds_bucket",
    "kafka_consumer_circuit_open", "kafka_consumer_lag", "kafka_consumer_lag_seconds",
    "kafka_consumer_committed_offset", "kafka_topic_high_watermark", "kafka_consumer_group_members",
    "kafka_dlq_reduced_total", "kafka_dlq_dropped_total", "http_connections_open",
    "http_connections_refused_total", "http_connections_timed_out_total",
    "kafka_consumer_status", "kafka_consumer_group_status", "kafka_consumer_lag_eta_seconds",
    "kafka_consumer_group_state", "kafka_lag_exporter_up", "kafka_lag_exporter_measurement_seconds",
    "kafka_lag_exporter_last_success_timestamp_seconds", "kafka_consumer_dlq_flood_held",
    "kafka_consumer_dlq_flood_trips_total",
    "query_lookups_total", "query_lookup_duration_seconds_bucket", "query_database_errors_total",
    "query_in_flight", "outbox_writes_total", "outbox_depth", "outbox_oldest_age_seconds",
    "outbox_relayed_total", "outbox_shards_held_total", "outbox_publish_failures_total",
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
    "process_start_time_seconds", "pubsubkafka_build_info",
}
prefixes = ("kafka_", "http_", "query_", "outbox_", "process_", "pubsubkafka_")
functions = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "le", "min", "avg", "count"}
dashboard = json.load(open("monitoring/grafana/pubsubkafka.json"))
variables = {v["name"] for v in dashboard["templating"]["list"]}
problems, queries = [], 0
for panel in dashboard["panels"]:
    if panel["type"] == "row":
        continue
    if not panel.get("datasource"):
        problems.append(f"panel {panel['title']!r} has no datasource")
    for target in panel.get("targets", []):
        queries += 1
        expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', "", target["expr"])
        for name in re.findall(r"[a-z_][a-z0-9_]*", expr):
            if name.startswith(prefixes) and name not in exported:
                problems.append(f"panel {panel['title']!r} queries unknown metric {name}")
        # Every selector is scoped by the dashboard's namespace and job
        # variables, and every variable it uses is defined.
        for selector in re.findall(r"\b(?:%s)[a-z0-9_]*(\{[^}]*\})?" % "|".join(prefixes), target["expr"]):
            if 'namespace=~"$namespace"' not in selector or 'job=~"$job"' not in selector:
                problems.append(f"panel {panel['title']!r}: a selector without the namespace and job variables: {target['expr']}")
        for used in re.findall(r"\$(?!__)([a-z_]+)", target["expr"]):
            if used not in variables:
                problems.append(f"panel {panel['title']!r} uses undefined variable ${used}")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"  {len(dashboard['panels'])} panels, {queries} queries, every metric exported")
PY
