"""`apollo` command line: one module per subcommand in this package.

Each subcommand module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
the dispatcher discovers them, so adding a job means adding one file. Heavy imports stay inside ``run``.

Every way out is one line on stderr: usage errors such as an out-of-range number (exit 2, see
`cli.arguments`), errors (exit 1), a missing optional package (the extra to install),
Ctrl-C (130), SIGTERM (143) and SIGHUP (129). The signals are raised as :class:`Terminated` (a
``KeyboardInterrupt``), so temporaries are removed on the way out exactly as for Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

from apollo_restore.cli.arguments import OneLineParser
from apollo_restore.errors import ApolloError, ApolloWarning, one_line
from apollo_restore.extras import missing_extra
from apollo_restore.files import discard_all

#: signals that end a run like Ctrl-C does (where the platform has them)
TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """A terminating signal, raised in the main thread so that ``finally`` blocks remove temporaries."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    for sig in TERMINATING_SIGNALS:  # a second signal must not interrupt the clean-up
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def _terminating_signals_raise() -> Iterator[None]:
    """While running a subcommand, SIGTERM/SIGHUP raise :class:`Terminated` (not where they are ignored, as
    under ``nohup``, nor off the main thread); the previous handlers come back afterwards."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in TERMINATING_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _subcommand_modules() -> list[ModuleType]:
    modules = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            modules.append(module)
    return sorted(modules, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="apollo", description="Restore lossy-compressed music with Apollo band-sequence models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _subcommand_modules():
        sp = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def _print_warnings(prog: str) -> None:
    """Show our warnings (damaged or truncated input, ...) as one line each on stderr, like errors."""
    show = getattr(warnings.showwarning, "shown_before", warnings.showwarning)  # main() may run again in-process

    def show_ours(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ApolloWarning):
            print(f"{prog}: warning: {one_line(message)}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    show_ours.shown_before = show
    warnings.showwarning = show_ours


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, one line): returned, so in-process callers see it
        return int(stop.code or 0)
    prog = f"apollo {args.command}"
    _print_warnings(prog)
    try:
        with _terminating_signals_raise():
            try:
                return int(args._run(args) or 0)
            finally:
                discard_all()
    except ApolloError as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 1
    except Terminated as stop:
        print(f"{prog}: stopped by {signal.Signals(stop.signum).name}; temporary files removed", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for users; APOLLO_DEBUG=1 re-raises for developers
        if os.environ.get("APOLLO_DEBUG"):
            raise
        missing = missing_extra(error)
        if missing is not None:
            print(f"{prog}: error: {missing}", file=sys.stderr)
            return 1
        print(f"{prog}: internal error: {one_line(f'{type(error).__name__}: {error}')} "
              "(set APOLLO_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
