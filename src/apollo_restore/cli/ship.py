"""`apollo ship`: a trained run's generator -> a bundled model of the package, with its model card (maintainers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from apollo_restore.errors import ApolloError

NAME = "ship"
HELP = "copy a training run's best/last generator into the package as a bundled model, with its model card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN_OR_CHECKPOINT", type=Path,
                        help="run directory of `apollo train`, a checkpoint inside one (RUN/best), or any checkpoint")
    parser.add_argument("name", help="bundled model name (`--checkpoint NAME` loads it)")
    parser.add_argument("--from", dest="which", default="best", choices=("best", "last"),
                        help="which checkpoint of a run directory (default: best)")
    parser.add_argument("--notes", type=Path, help="markdown file for the card's notes: lineage, what was tried, "
                                                   "evaluation tables")
    parser.add_argument("--into", type=Path, default=None,
                        help="models folder to write into (default: the package's assets/models)")


def run(args: argparse.Namespace) -> int:
    from apollo_restore.train.ship import ship

    try:
        notes = args.notes.read_text() if args.notes else ""
    except OSError as error:
        raise ApolloError(f"{args.notes}: cannot read notes ({error.strerror})") from None
    folder = ship(args.source, args.name, args.which, notes, args.into)
    print(f"shipped {args.source} as bundled model {args.name!r}: {folder}")
    return 0
