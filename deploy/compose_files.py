"""Checks what `docker compose config` does not: the files the stack mounts.

    compose_files.py CONFIG_JSON

CONFIG_JSON is `docker compose config --format json`. Every bind-mounted
source must exist (Docker would otherwise create an empty directory in its
place), the OpenTelemetry collector's pipelines must name only components its
config defines, and the Grafana provisioning files must parse.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def bind_mounts(config: dict) -> list[str]:
    errors = []
    for name, service in config.get("services", {}).items():
        for volume in service.get("volumes", []):
            if volume.get("type") == "bind" and not Path(volume["source"]).exists():
                errors.append(f"service {name}: bind mount source {volume['source']} does not exist")
    return errors


def collector(path: Path) -> list[str]:
    config = yaml.safe_load(path.read_text())
    errors = []
    service = config.get("service", {})
    for extension in service.get("extensions", []):
        if extension not in config.get("extensions", {}):
            errors.append(f"{path}: extension {extension} is enabled but not configured")
    for pipeline, spec in service.get("pipelines", {}).items():
        for section in ("receivers", "processors", "exporters"):
            for component in spec.get(section, []):
                if component not in (config.get(section) or {}):
                    errors.append(f"{path}: pipeline {pipeline} uses {section[:-1]} {component}, not defined")
        for section in ("receivers", "exporters"):
            if not spec.get(section):
                errors.append(f"{path}: pipeline {pipeline} has no {section}")
    return errors


def grafana(directory: Path) -> list[str]:
    errors = []
    for path in sorted(directory.rglob("*.yml")) + sorted(directory.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if not isinstance(document, dict) or document.get("apiVersion") != 1:
            errors.append(f"{path}: not a Grafana provisioning file (apiVersion: 1)")
    return errors


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    errors = bind_mounts(config)
    errors += collector(Path("deploy/otel-collector.yaml"))
    errors += grafana(Path("deploy/grafana/provisioning"))
    for error in errors:
        print(f"  FAIL {error}", file=sys.stderr)
    if not errors:
        print("  bind mounts exist; collector pipelines and Grafana provisioning are consistent")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
