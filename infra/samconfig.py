#!/usr/bin/env python3
"""Reads infra/samconfig.toml (written by the first, guided `make deploy`) for infra.mk.

  samconfig.py arch  <file> <config-env>         prints the saved Architecture (nothing if none)
  samconfig.py check <file> <config-env> <arch>  fails when the saved Architecture is not <arch>

The saved parameter_overrides may be one string (`A="x" B="y"`, as sam deploy --guided writes it) or a
list of `A=x` strings.
"""

import shlex
import sys
import tomllib


def overrides(path, env):
    with open(path, "rb") as f:
        config = tomllib.load(f)
    value = config.get(env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    items = shlex.split(value) if isinstance(value, str) else list(value)
    return dict(item.split("=", 1) for item in items if "=" in item)


def main(argv):
    command, path, env = argv[1:4]
    saved = overrides(path, env).get("Architecture", "")
    if command == "arch":
        print(saved)
        return 0
    if command == "check":
        wanted = argv[4]
        if saved and saved != wanted:
            print(
                f"deploy: {path} [{env}] deploys Architecture={saved}, but this build is ARCH={wanted}; "
                f"run make deploy ARCH={saved}, or change Architecture in {path}",
                file=sys.stderr,
            )
            return 1
        if not saved and wanted != "arm64":
            print(f"deploy: {path} [{env}] has no Architecture, so the template's arm64 would be deployed; add Architecture={wanted} to its parameter_overrides", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
