"""Renders the Helm chart and validates Kubernetes manifests, offline.

    manifests.py render CHART [-f VALUES]... -o OUT    helm lint (strict) + render
    manifests.py validate FILE... [options]            schema + project rules

`render` uses Helm's own Go library (the helm-python-sdk wheel): the chart is
linted in strict mode with the same values, its values.schema.json applies,
and the rendered templates are written to OUT (NOTES.txt printed, not kept).

`validate` checks every built-in kind against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict: unknown fields fail) for each --kube-version, and
the rules every workload of this project keeps (non-root, read-only root
filesystem, probes, resource limits). Every custom resource is checked against
the CRDs under --crds (the operators' official definitions, vendored in
deploy/crds): its API version must be served and not deprecated, its object
must match that version's openAPIV3Schema with the same validator and the same
strictness as the built-in kinds (a field the schema does not have fails), with
metadata checked as the built-in ObjectMeta, and the schema's CEL rules
(x-kubernetes-validations) must hold. With --kafka-security,
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

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def fail(errors: list[str]) -> int:
    for error in dict.fromkeys(errors):
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
    import helm_python.errors

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

    try:
        with helm.Chart.load(args.chart) as chart:
            rendered = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
    except helm.errors.HelmError as error:
        return fail([f"helm render: {error}"])

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


def strict_schema(node: dict) -> dict:
    """A CRD's structural OpenAPI v3 schema as a JSON Schema that, like the
    strict built-in schemas, refuses fields the schema does not declare
    (what the API server reports as unknown fields and prunes)."""
    node = dict(node)
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    node.pop("x-kubernetes-validations", None)
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if "properties" in node:
        node["properties"] = {k: strict_schema(v) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = strict_schema(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = strict_schema(node["additionalProperties"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            node[key] = [strict_schema(n) for n in node[key]]
    if "not" in node:
        node["not"] = strict_schema(node["not"])
    if node.get("type") == "object" and not preserve and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


def cel_errors(schema: dict, instance: object, where: str) -> list[str]:
    """The x-kubernetes-validations rules of the schema and its children
    that the instance breaks (transition rules, on oldSelf, do not apply to
    a new object)."""
    import celpy

    errors = []
    for rule in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"]:
            continue
        environment = celpy.Environment()
        program = environment.program(environment.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(instance)})
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{where or '/'}: {rule.get('message') or 'failed rule: ' + rule['rule']}")
    if isinstance(instance, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            child = properties.get(key, extra if isinstance(extra, dict) else None)
            if child:
                errors.extend(cel_errors(child, value, f"{where}/{key}"))
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, value in enumerate(instance):
            errors.extend(cel_errors(schema["items"], value, f"{where}/{index}"))
    return errors


class CustomResources:
    """The vendored CRDs: which (group, kind) they define, at which versions."""

    def __init__(self, root: str):
        self.definitions: dict[tuple[str, str], tuple[str, dict]] = {}
        for path in sorted(Path(root).rglob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                if document and document.get("kind") == "CustomResourceDefinition":
                    spec = document["spec"]
                    origin = f"{path.parent.name}/{path.name}"
                    self.definitions[(spec["group"], spec["names"]["kind"])] = (origin, spec)

    def groups(self) -> set[str]:
        return {group for group, _ in self.definitions}

    def validate(self, document: dict, kube_version: str) -> list[str]:
        import jsonschema
        import kubernetes_validate.utils as kv
        from referencing import Registry, Resource

        group, _, version = document["apiVersion"].rpartition("/")
        kind = document["kind"]
        name = name_of(document)
        if (group, kind) not in self.definitions:
            return [f"{name}: no CRD for {kind} in {group} under deploy/crds (vendor the operator's CRD)"]
        origin, spec = self.definitions[(group, kind)]
        versions = {v["name"]: v for v in spec["versions"]}
        served = sorted(v for v, d in versions.items() if d.get("served"))
        found = versions.get(version)
        if not found or not found.get("served"):
            return [f"{name}: {group}/{version} is not served by {origin} (it serves {', '.join(served)})"]
        if found.get("deprecated"):
            warning = found.get("deprecationWarning") or "deprecated"
            return [f"{name}: {group}/{version} is deprecated in {origin}: {warning}"]

        openapi = found["schema"]["openAPIV3Schema"]
        schema = strict_schema(openapi)
        definitions = kv.schema_contents(f"kubernetes-json-schema/v{kube_version}.0-local-strict/_definitions.json", kube_version)
        properties = dict(schema.get("properties", {}))
        properties["apiVersion"] = {"type": "string", "enum": [document["apiVersion"]]}
        properties["kind"] = {"type": "string", "enum": [kind]}
        properties["metadata"] = {"$ref": f"{definitions['$id']}#/$defs/{OBJECT_META}"}
        schema = {**schema, "properties": properties, "required": sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})}
        registry = Resource.from_contents(definitions) @ Registry()
        validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
        errors = [
            f"{name} ({origin}) at {'/'.join(str(p) for p in error.path) or '/'}: {error.message}"
            for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path)))
        ]
        errors.extend(f"{name} ({origin}) at {e}" for e in cel_errors(openapi, document, ""))
        return errors


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


def scaling_rules(document: dict) -> list[str]:
    """A ScaledObject must not chase an outage: lag that stands still does
    not count, and a formula combining the triggers is switched off by the
    consumer's circuit."""
    if document.get("kind") != "ScaledObject":
        return []
    name = name_of(document)
    spec = document.get("spec", {})
    triggers = spec.get("triggers", [])
    errors = [
        f"{name}: kafka trigger on {t.get('metadata', {}).get('topic')} needs excludePersistentLag: \"true\""
        for t in triggers
        if t.get("type") == "kafka" and t.get("metadata", {}).get("excludePersistentLag") != "true"
    ]
    formula = spec.get("advanced", {}).get("scalingModifiers", {}).get("formula")
    names = {t.get("name") for t in triggers}
    if formula:
        used = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula)) - {"max", "min"}
        errors += [f"{name}: formula names {u!r}, no trigger has that name" for u in sorted(used - names)]
        errors += [f"{name}: trigger {n!r} is not in the formula" for n in sorted(names - used - {None})]
        circuit = [t for t in triggers if "kafka_consumer_circuit_open" in t.get("metadata", {}).get("query", "")]
        if not circuit or not formula.startswith(f"{circuit[0].get('name')} > 0 ? 0 :"):
            errors.append(f"{name}: the formula must start with '<circuit trigger> > 0 ? 0 :' on kafka_consumer_circuit_open")
    elif any(t.get("type") == "prometheus" for t in triggers):
        errors.append(f"{name}: Prometheus triggers without a scalingModifiers formula")
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


def expected_principal(container: dict) -> str | None:
    """The user a component logs in as, by its container's name (None: any
    tested user). The console may replay only with --allow-replay: then it
    logs in as its own user (the lag exporter's rights and the replay
    job's), else as the lag exporter, which writes nothing."""
    name = container.get("name")
    if name == "console" and "--allow-replay" not in container.get("args", []):
        name = "lag-exporter"
    return f"pubsubkafka-{name}" if name in COMPONENTS else None


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
            principal = expected_principal(container)
            if principal and user != principal:
                errors.append(f"{where}: logs in as {user!r}, its rights are those of {principal!r}")
            password = env.get("KAFKA_SASL_PASSWORD")
            if not (isinstance(password, dict) and "secretKeyRef" in password):
                errors.append(f"{where}: KAFKA_SASL_PASSWORD must come from a Secret")
    if clients == 0:
        errors.append("no Kafka client container found")
    print(f"  {clients} Kafka client containers checked for {expected}, a verified CA and the users the suite logs in as")
    return errors


COMPONENTS = ("producer", "consumer", "lag-exporter", "dlq-replay", "console")
# Settings whose chart value differs from the binary's default on purpose.
CHART_DEFAULTS = {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}


def settings_table(readme: str) -> list[tuple[str, str | None, set[str]]]:
    """The configuration table (docs/configuration.md): (variable, default, containers)."""
    text = Path(readme).read_text()
    table = text[text.index("| variable | default | used by |"):].split("\n\n", 1)[0]
    settings = []
    for row in table.splitlines()[2:]:
        names_cell, default_cell, used_by = (cell.strip() for cell in row.strip("|").split("|"))
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", names_cell.split("(or")[0])
        # The default is what is quoted before an explanation (": ...") or an aside ("(...)").
        defaults = re.findall(r"`([^`]*)`", re.split(r"(?<=`):\s| \(", default_cell)[0])
        if used_by.startswith("all HTTP"):
            containers = {"producer", "consumer", "lag-exporter", "console"}
        elif used_by.startswith("all"):
            containers = set(COMPONENTS)
        else:
            containers = {c for c in ("producer", "consumer") if c in used_by}
            containers |= {"lag-exporter"} if "pubsubkafka lag" in used_by else set()
            containers |= {"dlq-replay"} if "dlq replay" in used_by else set()
            containers |= {"console"} if "pubsubkafka console" in used_by else set()
        for index, name in enumerate(names):
            default = defaults[index] if len(defaults) == len(names) else None
            settings.append((name, default, containers))
    return settings


def settings(documents: list[tuple[str, dict]], readme: str, mode: str,
             expected: dict[str, str] | None = None) -> list[str]:
    """mode "defaults": every setting the chart renders has the documented
    default, or the value `expected` names for it (which must then be
    rendered). mode "all": every documented setting is rendered for every
    container that reads it, with a value other than the default (proof
    that it comes from the values, not from the template)."""
    expected = expected or {}
    config_maps = {
        d.get("metadata", {}).get("name"): d.get("data", {})
        for _, d in documents
        if d.get("kind") == "ConfigMap"
    }
    environments: dict[str, list[tuple[str, dict]]] = {}
    for _, document in documents:
        for container in (pod_spec(document) or {}).get("containers", []):
            if container.get("name") in COMPONENTS:
                where = f"{name_of(document)} container {container['name']}"
                environments.setdefault(container["name"], []).append((where, container_env(container, config_maps)))
    errors = []
    table = settings_table(readme)
    for name, default, containers in table:
        for container in sorted(containers):
            for where, env in environments.get(container, []):
                value = env.get(name)
                if mode == "defaults" and name in expected:
                    if value != expected[name]:
                        errors.append(f"{where}: {name} is {value!r}, expected {expected[name]!r}")
                    continue
                if mode == "all" and value is None:
                    errors.append(f"{where}: {name} is not set (documented as used by {container}); add a chart value for it")
                elif mode == "all" and default is not None and value == default:
                    errors.append(f"{where}: {name} is {value!r}, the default, although every value is set otherwise")
                elif mode == "defaults" and isinstance(value, str) and default is not None \
                        and name not in CHART_DEFAULTS and value != default:
                    errors.append(f"{where}: {name} is {value!r}, the documented default is {default!r}")
    if not environments:
        errors.append("no container of the components " + ", ".join(COMPONENTS))
    print(f"  {len(table)} settings of the configuration table checked ({mode}) in {sorted(environments)}")
    return errors


def rules_of(path: str) -> object:
    return yaml.safe_load(Path(path).read_text())


def validate(args: argparse.Namespace) -> int:
    import kubernetes_validate

    documents = load_documents(args.files)
    custom = CustomResources(args.crds)
    errors: list[str] = []
    custom_checked: dict[str, int] = {}
    checked = 0
    kinds = set()

    for path, document in documents:
        kind = document.get("kind")
        api_version = document.get("apiVersion", "")
        if not kind or not api_version:
            errors.append(f"{path}: a document without apiVersion/kind")
            continue
        kinds.add(kind)
        group = api_version.rpartition("/")[0]
        if "." in group and not group.endswith(".k8s.io"):
            for version in args.kube_version:
                errors.extend(custom.validate(document, version))
            errors.extend(scaling_rules(document))
            custom_checked[f"{kind} ({api_version})"] = custom_checked.get(f"{kind} ({api_version})", 0) + 1
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
    names = {name_of(d) for _, d in documents}
    for component in args.forbid_component:
        errors += [
            f"found {name_of(d)} of component {component}, expected none (its toggle is off)"
            for _, d in documents
            if d.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component") == component
        ]
    for name in args.require_object:
        if name not in names:
            errors.append(f"expected {name}, not found")
    for name in args.forbid_object:
        if name in names:
            errors.append(f"found {name}, expected none (its toggle is off)")

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

    if args.settings:
        expected = dict(e.split("=", 1) for e in args.settings_expect)
        errors.extend(settings(documents, args.settings, args.settings_mode, expected))

    if args.expect_errors:
        return expected_errors(args.files, errors)

    versions = ", ".join(args.kube_version)
    print(f"  {checked} objects checked against the Kubernetes {versions} schemas (strict) and the workload rules")
    for kind, count in sorted(custom_checked.items()):
        print(f"  {count} x {kind} checked against its CRD under {args.crds} (strict, CEL rules)")
    return fail(errors)


def expected_errors(paths: list[str], errors: list[str]) -> int:
    """For files of objects that must be refused: every error named on an
    "# expect:" line is reported, and nothing else."""
    expected = [
        line.split("expect:", 1)[1].strip()
        for path in paths
        for line in Path(path).read_text().splitlines()
        if line.startswith("# expect:")
    ]
    errors = list(dict.fromkeys(errors))
    problems = [f"not refused as expected: {e}" for e in expected if not any(e in error for error in errors)]
    problems += [f"refused, but not expected: {error}" for error in errors if not any(e in error for e in expected)]
    if not expected:
        problems.append("no '# expect:' lines")
    if not problems:
        print(f"  all {len(expected)} expected errors reported, and no other")
    return fail(problems)


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
    v.add_argument("--crds", default="deploy/crds", metavar="DIR",
                   help="the CustomResourceDefinitions custom resources are checked against")
    v.add_argument("--require", action="append", default=[], metavar="KIND")
    v.add_argument("--forbid", action="append", default=[], metavar="KIND")
    v.add_argument("--require-object", action="append", default=[], metavar="KIND/NAME")
    v.add_argument("--forbid-object", action="append", default=[], metavar="KIND/NAME")
    v.add_argument("--forbid-component", action="append", default=[], metavar="NAME",
                   help="no object labelled app.kubernetes.io/component=NAME")
    v.add_argument("--rules", help="rule file every PrometheusRule's spec must equal")
    v.add_argument("--topics", metavar="P/R/M", help="partitions/replicas/min.insync.replicas of every KafkaTopic")
    v.add_argument("--kafka-security", metavar="PROTOCOL/MECHANISM",
                   help="what every Kafka client container must be configured with")
    v.add_argument("--settings", metavar="TABLE",
                   help="check the settings of the configuration table (docs/configuration.md) (see --settings-mode)")
    v.add_argument("--settings-mode", choices=("defaults", "all"), default="defaults",
                   help="defaults: rendered settings have the documented defaults; "
                        "all: every setting is rendered, none at its default")
    v.add_argument("--settings-expect", action="append", default=[], metavar="NAME=VALUE",
                   help="with --settings-mode defaults: NAME must be rendered with VALUE, not its default")
    v.add_argument("--expect-errors", action="store_true",
                   help="the files must be refused with exactly the errors on their '# expect:' lines")
    v.add_argument("--tested-users", metavar="FILE", help="the harness file naming the users the suite logs in as")
    v.set_defaults(run=validate)

    args = parser.parse_args()
    if args.command == "validate" and not args.kube_version:
        args.kube_version = ["1.37"]
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
