"""Renders the Helm chart and validates Kubernetes manifests, offline.

    manifests.py render CHART [-f VALUES]... -o OUT    helm lint (strict) + render
    manifests.py validate FILE... [options]            schema + project rules

`render` uses Helm's own Go library (the helm-python-sdk wheel): the chart is
linted in strict mode with the same values, its values.schema.json applies,
and the rendered templates are written to OUT (NOTES.txt printed, not kept).

`validate` checks every built-in kind against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict: unknown fields fail) for each --kube-version, and
the rules every workload of this project keeps (non-root, read-only root
filesystem, probes, resource limits). Custom resources cannot be checked
against their CRDs offline; they are listed as skipped. With --kafka-security,
every Kafka client container must get the security settings the end-to-end
suite proves (protocol, mechanism, CA, a password from a Secret) and log in as
one of the users it names (--tested-users: the harness file naming them).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

# API groups of the custom resources the manifests use; no schema offline.
CRD_GROUPS = ("kafka.strimzi.io", "keda.sh", "monitoring.coreos.com")


def fail(errors: list[str]) -> int:
    for error in errors:
        print(f"  FAIL {error}", file=sys.stderr)
    return 1 if errors else 0


def deep_merge(base: dict, override: dict) -> dict:
    """Helm's coalescing of values files: maps merge, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render(args: argparse.Namespace) -> int:
    import helm_python as helm

    values: dict = {}
    for path in args.values:
        values = deep_merge(values, yaml.safe_load(Path(path).read_text()) or {})

    report = helm.lint(args.chart, values, strict=True, kube_version=args.kube_version)
    errors = []
    for message in report.get("messages") or []:
        severity = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(message["severity"], "UNKNOWN")
        line = f"{severity} {message['path']}: {message['error'].strip()}"
        if message["severity"] >= 2:
            errors.append(line)
        else:
            print(f"  lint {line}")
    if not errors:
        errors = [str(e).strip() for e in report.get("errors") or []]
    if errors:
        return fail([f"helm lint: {e}" for e in errors])

    with helm.Chart.load(args.chart) as chart:
        rendered = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)

    documents = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            if not text.strip():
                return fail(["NOTES.txt rendered empty"])
            continue
        if text.strip():
            documents.append(f"---\n# Source: {template}\n{text.strip()}\n")
    Path(args.output).write_text("".join(documents))
    print(f"  helm lint --strict: ok; rendered {len(documents)} templates to {args.output}")
    return 0


def load_documents(paths: list[str]) -> list[tuple[str, dict]]:
    documents = []
    for path in paths:
        for document in yaml.safe_load_all(Path(path).read_text()):
            if document:
                documents.append((path, document))
    return documents


def name_of(document: dict) -> str:
    return f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"


def pod_spec(document: dict) -> dict | None:
    kind = document.get("kind")
    spec = document.get("spec", {})
    if kind == "Pod":
        return spec
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return spec.get("template", {}).get("spec")
    if kind == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    return None


def workload_rules(document: dict) -> list[str]:
    """What every pod of this project must keep."""
    spec = pod_spec(document)
    if spec is None:
        return []
    errors = []
    name = name_of(document)
    if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
        errors.append(f"{name}: pod securityContext.runAsNonRoot must be true")
    if spec.get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: automountServiceAccountToken must be false")
    for container in spec.get("containers", []):
        where = f"{name} container {container.get('name')}"
        security = container.get("securityContext", {})
        if security.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}: readOnlyRootFilesystem must be true")
        if security.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: allowPrivilegeEscalation must be false")
        if "ALL" not in security.get("capabilities", {}).get("drop", []):
            errors.append(f"{where}: capabilities must drop ALL")
        if not container.get("resources", {}).get("limits", {}).get("memory"):
            errors.append(f"{where}: needs a memory limit")
        image = str(container.get("image", ""))
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            errors.append(f"{where}: image {image!r} needs a pinned tag")
        if document["kind"] == "Deployment":
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    errors.append(f"{where}: needs a {probe}")
    return errors


def container_env(container: dict, config_maps: dict[str, dict]) -> dict[str, object]:
    """A container's environment: its ConfigMaps' data, then its own env
    (a value, or the source it is read from)."""
    env: dict[str, object] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef", {}).get("name")
        env.update(config_maps.get(ref, {}))
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return env


def tested_users(path: str) -> set[str]:
    """The Kafka users the end-to-end suite logs in as, from the harness."""
    return set(re.findall(r'=> "(pubsubkafka-[a-z-]+)"', Path(path).read_text()))


def kafka_security(documents: list[tuple[str, dict]], expected: str, users: set[str]) -> list[str]:
    """Every Kafka client container logs in as the suite does."""
    protocol, mechanism = expected.split("/")
    config_maps = {
        d.get("metadata", {}).get("name"): d.get("data", {})
        for _, d in documents
        if d.get("kind") == "ConfigMap"
    }
    errors = []
    clients = 0
    for _, document in documents:
        spec = pod_spec(document)
        if spec is None:
            continue
        for container in spec.get("containers", []):
            env = container_env(container, config_maps)
            if "KAFKA_BOOTSTRAP_SERVERS" not in env:
                continue
            clients += 1
            where = f"{name_of(document)} container {container.get('name')}"
            for variable, value in (("KAFKA_SECURITY_PROTOCOL", protocol), ("KAFKA_SASL_MECHANISM", mechanism)):
                if env.get(variable) != value:
                    errors.append(f"{where}: {variable} is {env.get(variable)!r}, the suite proves {value!r}")
            if "SSL" in protocol and not env.get("KAFKA_SSL_CA_LOCATION"):
                errors.append(f"{where}: no KAFKA_SSL_CA_LOCATION: the suite verifies the brokers' CA")
            user = env.get("KAFKA_SASL_USERNAME")
            if user not in users:
                errors.append(f"{where}: logs in as {user!r}, the suite logs in as one of {sorted(users)}")
            password = env.get("KAFKA_SASL_PASSWORD")
            if not (isinstance(password, dict) and "secretKeyRef" in password):
                errors.append(f"{where}: KAFKA_SASL_PASSWORD must come from a Secret")
    if clients == 0:
        errors.append("no Kafka client container found")
    print(f"  {clients} Kafka client containers checked for {expected}, a verified CA and the users the suite logs in as")
    return errors


def rules_of(path: str) -> object:
    return yaml.safe_load(Path(path).read_text())


def validate(args: argparse.Namespace) -> int:
    import kubernetes_validate

    documents = load_documents(args.files)
    errors: list[str] = []
    skipped: dict[str, int] = {}
    checked = 0
    kinds = set()

    for path, document in documents:
        kind = document.get("kind")
        api_version = document.get("apiVersion", "")
        if not kind or not api_version:
            errors.append(f"{path}: a document without apiVersion/kind")
            continue
        kinds.add(kind)
        if api_version.split("/")[0] in CRD_GROUPS:
            skipped[f"{kind} ({api_version})"] = skipped.get(f"{kind} ({api_version})", 0) + 1
            continue
        for version in args.kube_version:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                location = "/".join(str(p) for p in error.path)
                errors.append(f"{name_of(document)} (Kubernetes {version}) at {location}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{name_of(document)}: no schema for {api_version} in Kubernetes {version}")
        checked += 1
        errors.extend(workload_rules(document))

    for kind in args.require:
        if kind not in kinds:
            errors.append(f"expected a {kind}, found none")
    for kind in args.forbid:
        if kind in kinds:
            errors.append(f"found a {kind}, expected none (its toggle is off)")

    if args.topics:
        partitions, replicas, min_isr = (int(n) for n in args.topics.split("/"))
        topics = [d for _, d in documents if d.get("kind") == "KafkaTopic"]
        for topic in topics:
            spec = topic.get("spec", {})
            found = (spec.get("partitions"), spec.get("replicas"), spec.get("config", {}).get("min.insync.replicas"))
            if found != (partitions, replicas, min_isr):
                errors.append(f"{name_of(topic)}: partitions/replicas/min.insync.replicas {found}, expected {args.topics}")
        if topics:
            print(f"  {len(topics)} topics with partitions/replicas/min.insync.replicas {args.topics}")

    if args.rules:
        expected = rules_of(args.rules)
        rules = [d for _, d in documents if d.get("kind") == "PrometheusRule"]
        for rule in rules:
            if rule.get("spec") != expected:
                errors.append(f"{name_of(rule)}: rules differ from {args.rules} (bash deploy/sync-alerts.sh)")

    if args.kafka_security:
        if not args.tested_users:
            errors.append("--kafka-security needs --tested-users")
        else:
            errors.extend(kafka_security(documents, args.kafka_security, tested_users(args.tested_users)))

    versions = ", ".join(args.kube_version)
    print(f"  {checked} objects checked against the Kubernetes {versions} schemas (strict) and the workload rules")
    for kind, count in sorted(skipped.items()):
        print(f"  skipped {count} x {kind}: custom resource, its CRD schema is not available offline")
    return fail(errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    r = commands.add_parser("render", help="lint and render a chart")
    r.add_argument("chart")
    r.add_argument("-f", "--values", action="append", default=[])
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--release", default="pubsubkafka")
    r.add_argument("--namespace", default="pubsubkafka")
    r.add_argument("--kube-version", default="v1.30.0")
    r.set_defaults(run=render)

    v = commands.add_parser("validate", help="validate manifests")
    v.add_argument("files", nargs="+")
    v.add_argument("--kube-version", action="append", default=[])
    v.add_argument("--require", action="append", default=[], metavar="KIND")
    v.add_argument("--forbid", action="append", default=[], metavar="KIND")
    v.add_argument("--rules", help="rule file every PrometheusRule's spec must equal")
    v.add_argument("--topics", metavar="P/R/M", help="partitions/replicas/min.insync.replicas of every KafkaTopic")
    v.add_argument("--kafka-security", metavar="PROTOCOL/MECHANISM",
                   help="what every Kafka client container must be configured with")
    v.add_argument("--tested-users", metavar="FILE", help="the harness file naming the users the suite logs in as")
    v.set_defaults(run=validate)

    args = parser.parse_args()
    if args.command == "validate" and not args.kube_version:
        args.kube_version = ["1.37"]
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
