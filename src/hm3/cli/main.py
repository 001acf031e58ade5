"""The `hm3` command line: one sub-command per capability.

Each sub-command lives beside the code it drives and exposes
``register(subparsers)``, which adds its parser and sets ``func``.
Modules are imported lazily so `hm3 --help` stays fast and a broken optional
dependency only breaks its own sub-command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hm3.core.errors import HM3Error

# module path of every sub-command provider, in help order
SUBCOMMAND_MODULES = [
    "hm3.cli.data",
    "hm3.cli.models",
    "hm3.cli.evaluate",
    "hm3.cli.policy",
    "hm3.cli.suggest",
    "hm3.cli.merge",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hm3", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue  # provider not present in this build
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HM3Error as err:
        print(f"hm3 {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
