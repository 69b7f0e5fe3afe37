"""Checks the Kafka ACLs against their one source, the chart's files/acls.json.

    acls.py ACLS_JSON [--name SYMBOL=NAME]... [--terraform DIR]... MANIFEST...

ACLS_JSON gives the grants of each component's principal with symbolic names:
the topics orders, users, orders-dlq, users-dlq, orders-state and the groups
consumer-group and dlq-replay-group. The chart renders its KafkaUsers from it
and the Terraform module its kafka_acl resources; kustomize has no templating,
so k8s/base/kafka-users.yaml is written out. The file's shape is checked first
(known types, names and Kafka operations). Then every MANIFEST (a static file
or a rendered chart) must hold one KafkaUser per component, named
pubsubkafka-<component> and labelled with it, granting exactly the ACLs the
file gives that component, no more, no fewer, with the default names: topics
orders, users and orders-state, "<topic>-dlq", groups order-consumer and
dlq-replay (--name changes one; the dead-letter topics follow their topic).
The console allowed to replay (role console) must have exactly the rights of
the lag exporter and of the replay job together, and its KafkaUser is in a
manifest exactly when the manifest runs `pubsubkafka console --allow-replay`
(a read-only console logs in as the lag exporter). With --terraform, the
module in DIR must read ACLS_JSON and name no Kafka operation itself, so an
inline list of grants cannot come back.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import yaml

TOPICS = ("orders", "users", "orders-dlq", "users-dlq", "orders-state")
GROUPS = ("consumer-group", "dlq-replay-group")
DEFAULT_NAMES = {
    "orders": "orders",
    "users": "users",
    "orders-state": "orders-state",
    "consumer-group": "order-consumer",
    "dlq-replay-group": "dlq-replay",
}
DEFAULT_NAMES_ALL = {**DEFAULT_NAMES, "orders-dlq": "orders-dlq", "users-dlq": "users-dlq"}
# The operations of Kafka's ACLs, as Strimzi spells them.
OPERATIONS = {
    "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
    "DescribeConfigs", "AlterConfigs", "IdempotentWrite", "All",
}
USER_PREFIX = "pubsubkafka-"
# The console allowed to replay, and the roles whose rights it has together.
CONSOLE = "console"
CONSOLE_PARTS = ("lag-exporter", "dlq-replay")

# (resource type, resource name or None, pattern type or None, operation, host, allow/deny)
Acl = tuple[str, str | None, str | None, str, str, str]


def shape(source: object) -> list[str]:
    """What is wrong with the file's shape, which every reader relies on."""
    if not isinstance(source, dict) or set(source) != {"about", "roles"}:
        return ["the file must be an object with exactly the keys about and roles"]
    errors = []
    if not isinstance(source["about"], str) or not source["about"].strip():
        errors.append("about must be a sentence")
    if not isinstance(source["roles"], dict) or not source["roles"]:
        return errors + ["roles must map each component to its grants"]
    for role, grants in source["roles"].items():
        if not re.fullmatch(r"[a-z]+(-[a-z]+)*", role):
            errors.append(f"role {role!r}: not a component name (lower case, words joined by '-')")
        if not isinstance(grants, list) or not grants:
            errors.append(f"role {role}: its grants must be a non-empty list")
            continue
        for number, grant in enumerate(grants):
            where = f"role {role}, grant {number}"
            if not isinstance(grant, dict) or set(grant) != {"type", "names", "operations"}:
                errors.append(f"{where}: must have exactly the keys type, names and operations")
                continue
            kind, names, operations = grant["type"], grant["names"], grant["operations"]
            known = {"topic": TOPICS, "group": GROUPS, "cluster": ()}.get(kind)
            if known is None:
                errors.append(f"{where}: type {kind!r} is not topic, group or cluster")
                continue
            if not isinstance(names, list) or (kind == "cluster") != (not names):
                errors.append(f"{where}: a {kind} grant needs a list of {'no' if kind == 'cluster' else 'some'} names")
            else:
                errors += [f"{where}: {n!r} is not a symbolic {kind} name ({', '.join(known)})" for n in names if n not in known]
            if not isinstance(operations, list) or not operations:
                errors.append(f"{where}: operations must be a non-empty list")
            else:
                errors += [f"{where}: {o!r} is not a Kafka operation" for o in operations if o not in OPERATIONS]
    return errors


def expected(grants: list[dict], names: dict[str, str]) -> Counter[Acl]:
    """A component's ACLs, one per resource and operation, with real names."""
    acls: Counter[Acl] = Counter()
    for grant in grants:
        resources = [None] if grant["type"] == "cluster" else [names[n] for n in grant["names"]]
        for resource in resources:
            pattern = None if resource is None else "literal"
            for operation in grant["operations"]:
                acls[(grant["type"], resource, pattern, operation, "*", "allow")] += 1
    return acls


def console_rights(roles: dict) -> list[str]:
    """The console's rights are the lag exporter's and the replay job's, no more."""
    if CONSOLE not in roles:
        return [f"no role {CONSOLE}"]
    if any(part not in roles for part in CONSOLE_PARTS):
        return []
    want = set()
    for part in CONSOLE_PARTS:
        want |= set(expected(roles[part], DEFAULT_NAMES_ALL))
    have = set(expected(roles[CONSOLE], DEFAULT_NAMES_ALL))
    errors = [f"role {CONSOLE}: missing {show(acl)}, which {' or '.join(CONSOLE_PARTS)} has" for acl in sorted(want - have, key=str)]
    errors += [f"role {CONSOLE}: grants {show(acl)}, which neither {' nor '.join(CONSOLE_PARTS)} has" for acl in sorted(have - want, key=str)]
    return errors


def runs_replaying_console(documents: list) -> bool:
    """Whether a manifest runs `pubsubkafka console --allow-replay`."""
    for document in documents:
        spec = (((document.get("spec") or {}).get("template") or {}).get("spec") or {})
        for container in spec.get("containers") or []:
            args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
            if "console" in args and "--allow-replay" in args:
                return True
    return False


def granted(user: dict) -> Counter[Acl]:
    """A KafkaUser's ACLs, one per resource and operation, Strimzi's defaults filled in."""
    acls: Counter[Acl] = Counter()
    for acl in ((user.get("spec") or {}).get("authorization") or {}).get("acls") or []:
        resource = acl.get("resource") or {}
        kind = resource.get("type")
        name = resource.get("name")
        pattern = resource.get("patternType", "literal") if kind != "cluster" else None
        for operation in acl.get("operations") or []:
            acls[(kind, name, pattern, operation, acl.get("host", "*"), acl.get("type", "allow"))] += 1
    return acls


def show(acl: Acl) -> str:
    kind, name, pattern, operation, host, permission = acl
    resource = kind if name is None else f"{kind} {name} ({pattern})"
    extra = "" if (host, permission) == ("*", "allow") else f", host {host}, {permission}"
    return f"{operation} on {resource}{extra}"


def check_manifest(path: str, roles: dict, names: dict[str, str]) -> list[str]:
    documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if isinstance(d, dict)]
    users = [document for document in documents if document.get("kind") == "KafkaUser"]
    if not runs_replaying_console(documents):
        roles = {role: grants for role, grants in roles.items() if role != CONSOLE}
    errors = []
    found = set()
    for user in users:
        metadata = user.get("metadata") or {}
        name = metadata.get("name", "")
        component = (metadata.get("labels") or {}).get("app.kubernetes.io/component")
        where = f"{path}: KafkaUser {name}"
        if component == CONSOLE and CONSOLE not in roles:
            errors.append(f"{where}: nothing here runs `pubsubkafka console --allow-replay`, so no user may have its rights")
            continue
        if component not in roles:
            errors.append(f"{where}: component {component!r} has no role in the ACL file")
            continue
        if name != USER_PREFIX + component:
            errors.append(f"{where}: the user of component {component} is {USER_PREFIX + component}")
        if component in found:
            errors.append(f"{where}: a second KafkaUser of component {component}")
        found.add(component)
        want, have = expected(roles[component], names), granted(user)
        errors += [f"{where}: missing {show(acl)}" for acl in sorted(want - have, key=str)]
        errors += [f"{where}: grants {show(acl)}, which the ACL file does not" for acl in sorted(have - want, key=str)]
    errors += [f"{path}: no KafkaUser of component {role}" for role in roles if role not in found]
    if not errors:
        count = sum(sum(granted(user).values()) for user in users)
        print(f"  {path}: {len(users)} KafkaUsers, {count} ACLs, as the ACL file gives them")
    return errors


def tf_text(directory: Path) -> str:
    """The module's .tf files without their comment lines."""
    return "\n".join(
        line
        for path in sorted(directory.glob("*.tf"))
        for line in path.read_text().splitlines()
        if not line.lstrip().startswith(("#", "//"))
    )


def check_terraform(directory: Path, source: Path) -> list[str]:
    text = tf_text(directory)
    read = [
        relative
        for relative in re.findall(r'jsondecode\(\s*file\(\s*"\$\{path\.module\}/([^"]+)"\s*\)\s*\)', text)
        if (directory / relative).exists() and (directory / relative).samefile(source)
    ]
    errors = []
    if not read:
        errors.append(f"{directory}: does not read {source} (jsondecode(file(\"${{path.module}}/...\")))")
    for operation in sorted(set(re.findall(r'"([A-Za-z]+)"', text)) & OPERATIONS):
        errors.append(f"{directory}: names the Kafka operation {operation!r}; its grants must come from {source}")
    if not errors:
        print(f"  {directory}: its ACLs come from {source}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="ACLS_JSON")
    parser.add_argument("manifests", nargs="*", metavar="MANIFEST")
    parser.add_argument("--name", action="append", default=[], metavar="SYMBOL=NAME")
    parser.add_argument("--terraform", action="append", default=[], metavar="DIR")
    args = parser.parse_args()

    try:
        source = json.loads(Path(args.source).read_text())
    except (OSError, ValueError) as error:
        print(f"  FAIL {args.source}: {error}", file=sys.stderr)
        return 1
    errors = [f"{args.source}: {error}" for error in shape(source)]
    names = dict(DEFAULT_NAMES)
    for override in args.name:
        symbol, _, name = override.partition("=")
        if symbol not in names or not name:
            errors.append(f"--name {override}: give one of {', '.join(names)} a name")
        names[symbol] = name
    names.update({f"{topic}-dlq": f"{names[topic]}-dlq" for topic in ("orders", "users")})

    if not errors:
        errors += [f"{args.source}: {error}" for error in console_rights(source["roles"])]
    if not errors:
        print(f"  {args.source}: {len(source['roles'])} roles, well formed; the console's rights are the {' and '.join(CONSOLE_PARTS)}'s")
        for path in args.manifests:
            errors += check_manifest(path, source["roles"], names)
        for directory in args.terraform:
            errors += check_terraform(Path(directory), Path(args.source))
    for error in errors:
        print(f"  FAIL {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
