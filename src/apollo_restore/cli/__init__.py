"""`apollo` command line: one module per subcommand in this package.

Each subcommand module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
the dispatcher discovers them, so adding a job means adding one file. Heavy imports stay inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from types import ModuleType

from apollo_restore.errors import ApolloError


def _subcommand_modules() -> list[ModuleType]:
    modules = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            modules.append(module)
    return sorted(modules, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apollo", description="Restore lossy-compressed music with Apollo band-sequence models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _subcommand_modules():
        sp = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except ApolloError as error:
        print(f"apollo {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"apollo {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for users; APOLLO_DEBUG=1 re-raises for developers
        if os.environ.get("APOLLO_DEBUG"):
            raise
        print(
            f"apollo {args.command}: internal error: {type(error).__name__}: {error} "
            "(set APOLLO_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
