"""Checks the references of Terraform configurations without providers.

`terraform validate` needs the providers, which cannot be downloaded here. This
parses each configuration directory given (python-hcl2) and checks what
validate would catch first: every var.*, local.*, module.* and resource
reference resolves, every declared variable is used, and each module call
passes only variables the module declares and all those it requires. With
--docs, every Secret name a module call ends up with (an input named
*_secret_name, given or defaulted) must be one the operator guide tells to
create, so the two cannot drift apart.

    terraform_refs.py [--docs GUIDE.md] DIR...
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hcl2

IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"


def unquote(name: str) -> str:
    return name.strip('"')


def load(directory: Path) -> tuple[dict, str]:
    """All blocks of a directory's .tf files, and their text without comments."""
    blocks: dict[str, list] = {}
    text = []
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            for kind, entries in hcl2.load(handle).items():
                if not kind.startswith("__"):
                    blocks.setdefault(kind, []).extend(entries)
        for line in path.read_text().splitlines():
            if not line.lstrip().startswith(("#", "//")):
                text.append(line)
    return blocks, "\n".join(text)


def variables(blocks: dict) -> dict[str, dict]:
    return {unquote(n): body for entry in blocks.get("variable", []) for n, body in entry.items()}


def check(directory: Path, docs: str | None) -> list[str]:
    blocks, text = load(directory)
    errors: list[str] = []
    declared = variables(blocks)
    local_names = {n for entry in blocks.get("locals", []) for n in entry}
    resources = {
        f"{unquote(kind)}.{unquote(name)}"
        for entry in blocks.get("resource", [])
        for kind, named in entry.items()
        for name in named
    }
    modules = {unquote(n): body for entry in blocks.get("module", []) for n, body in entry.items()}

    used = set(re.findall(rf"\bvar\.({IDENT})", text))
    errors += [f"{directory}: var.{v} is not declared" for v in sorted(used - set(declared))]
    errors += [f"{directory}: variable {v!r} is never used" for v in sorted(set(declared) - used)]
    for name in sorted(set(re.findall(rf"\blocal\.({IDENT})", text)) - local_names):
        errors.append(f"{directory}: local.{name} is not defined")
    for kind, name in sorted(set(re.findall(r"(?<![.\w])((?:kafka|helm)_[a-z_]+)\.([a-z_]+)\b", text))):
        if f"{kind}.{name}" not in resources:
            errors.append(f"{directory}: {kind}.{name} is not a resource of this configuration")

    for name, body in modules.items():
        source = directory / unquote(str(body.get("source", "")))
        if not source.is_dir():
            errors.append(f"{directory}: module {name}: source {source} is not a directory")
            continue
        module_blocks, _ = load(source)
        inputs = variables(module_blocks)
        meta = ("source", "version", "providers", "depends_on", "count", "for_each")
        given = {k for k in body if k not in meta and not k.startswith("__")}
        errors += [f"{directory}: module {name}: {k!r} is not a variable of {source}" for k in sorted(given - set(inputs))]
        required = {k for k, spec in inputs.items() if "default" not in spec}
        errors += [f"{directory}: module {name}: required {k!r} is not given" for k in sorted(required - given)]
        if docs is not None:
            for key in sorted(k for k in inputs if k.endswith("_secret_name")):
                value = unquote(str(body.get(key, inputs[key].get("default") or "")))
                if value and not re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", docs):
                    errors.append(f"{directory}: module {name}: {key} = {value!r} is not a Secret the operator guide names")
        outputs = {unquote(n) for entry in module_blocks.get("output", []) for n in entry}
        for output in sorted(set(re.findall(rf"\bmodule\.{re.escape(name)}\.({IDENT})", text)) - outputs):
            errors.append(f"{directory}: module.{name}.{output} is not an output of {source}")
    return errors


def main() -> int:
    errors = []
    arguments = sys.argv[1:]
    docs = None
    if arguments[:1] == ["--docs"]:
        docs = Path(arguments[1]).read_text()
        arguments = arguments[2:]
    for directory in arguments:
        found = check(Path(directory), docs)
        errors += found
        if not found:
            print(f"  {directory}: references resolve")
    for error in errors:
        print(f"  FAIL {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
