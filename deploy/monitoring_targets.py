"""Checks that the alert rules and the dashboard select what the chart's
ServiceMonitors produce, under whatever release name and namespace the chart
was rendered with.

For every Service a ServiceMonitor selects (same namespace, matchLabels) and
every endpoint whose port the Service has, computes the `job` label the
Prometheus Operator gives the target: the Service's name, or the value of its
`jobLabel` label, then the endpoint's relabelings on `job` (replace). Then
every `job` matcher of every alert expression and dashboard query must match
at least one of those jobs, and every service must have a job the alerts'
`up{job=...}` rules watch.

    python deploy/monitoring_targets.py RENDERED.yaml --rules ALERTS.yml --dashboard DASHBOARD.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import yaml

MATCHER = re.compile(r'\bjob\s*(=~|!~|!=|=)\s*"([^"]*)"')
# The dashboard's variables at their "All" value.
VARIABLES = {"$namespace": ".*", "$job": None}


def label_meta(name: str) -> str:
    return "__meta_kubernetes_service_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str]:
    for rule in rules:
        action = rule.get("action", "replace").lower()
        if action != "replace":
            continue
        separator = rule.get("separator", ";")
        value = separator.join(labels.get(s, "") for s in rule.get("sourceLabels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            replacement = re.sub(r"\$(\d+)|\$\{(\d+)\}", lambda m: match.group(int(m.group(1) or m.group(2))) or "",
                                 rule.get("replacement", "$1"))
            labels[rule["targetLabel"]] = replacement
    return labels


def targets(documents: list[dict]) -> list[tuple[str, str, str]]:
    """(service, port, job) of every target of every ServiceMonitor."""
    services = [d for d in documents if d.get("kind") == "Service"]
    found = []
    for monitor in (d for d in documents if d.get("kind") == "ServiceMonitor"):
        spec = monitor["spec"]
        namespace = monitor["metadata"].get("namespace")
        wanted = spec.get("selector", {}).get("matchLabels", {})
        for service in services:
            labels = service["metadata"].get("labels", {})
            if service["metadata"].get("namespace") != namespace:
                continue
            if any(labels.get(k) != v for k, v in wanted.items()):
                continue
            ports = {p.get("name") for p in service["spec"].get("ports", [])}
            for endpoint in spec.get("endpoints", []):
                if endpoint.get("port") not in ports:
                    continue
                job = service["metadata"]["name"]
                if spec.get("jobLabel") and spec["jobLabel"] in labels:
                    job = labels[spec["jobLabel"]]
                meta = {label_meta(k): v for k, v in labels.items()}
                meta["job"] = job
                job = relabel(meta, endpoint.get("relabelings", []))["job"]
                found.append((service["metadata"]["name"], endpoint["port"], job))
    return found


def matches(op: str, value: str, job: str) -> bool:
    if op == "=":
        return job == value
    if op == "!=":
        return job != value
    hit = re.fullmatch(value, job) is not None
    return hit if op == "=~" else not hit


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("rendered")
    parser.add_argument("--rules", required=True)
    parser.add_argument("--dashboard", required=True)
    args = parser.parse_args()

    with open(args.rendered) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    found = targets(documents)
    jobs = {job for _, _, job in found}
    problems = []
    if not found:
        problems.append("no ServiceMonitor target: nothing would be scraped")

    queries = []
    with open(args.rules) as f:
        for group in yaml.safe_load(f)["groups"]:
            for rule in group["rules"]:
                queries.append((f"alert {rule.get('alert', rule.get('record'))}", rule["expr"]))
    with open(args.dashboard) as f:
        dashboard = json.load(f)
    all_values = {f"${v['name']}": v.get("allValue") for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in all_values.items():
                if value is not None:
                    expr = expr.replace(name, value)
            queries.append((f"panel {panel['title']!r}", expr))

    checked = 0
    for where, expr in queries:
        for op, value in MATCHER.findall(expr):
            checked += 1
            if op in ("=", "=~") and not any(matches(op, value, job) for job in jobs):
                problems.append(f"{where}: job{op}\"{value}\" selects none of the targets' jobs {sorted(jobs)}")

    # Every scraped service is watched by a "down" alert.
    watched = {value for where, expr in queries if where.startswith("alert ")
               for value in re.findall(r'\bup\{[^}]*\bjob\s*=\s*"([^"]*)"', expr)}
    for service, port, job in found:
        if job not in watched:
            problems.append(f"target {service}:{port} (job {job}) has no up{{job=...}} alert")

    if problems:
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"  {len(found)} targets, jobs {sorted(jobs)}; {checked} job matchers each select a target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
