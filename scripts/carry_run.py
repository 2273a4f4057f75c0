"""Carry a training run to a new machine through the repository: for sessions whose machine is not kept.

A run lives in its run directory, outside the checkout; ``apollo train CONFIG --run-dir RUN`` resumes it. When the
next session gets a fresh machine, only what is committed survives. ``save`` copies the files a resume needs
(``state.pt`` and its checksum: generator, discriminator, both optimizers, step, epoch, best score, RNG;
``config.yaml``; ``metrics.jsonl``; the ``best/`` checkpoint, once there is one) into ``carry/NAME/`` of the
checkout, with this machine's ``$APOLLO_DATA`` written as ``${APOLLO_DATA}`` and the run's own path as its
name; ``restore`` puts them back into a run directory, with ``$APOLLO_DATA`` expanded, so that the same
``apollo train`` command resumes at the saved step:

    python scripts/carry_run.py save RUNS/long-default long-default      # before the session ends (run stopped)
    python scripts/carry_run.py restore long-default RUNS/long-default   # on the new machine, after make-data
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from apollo_restore.train.config import DATA_VARIABLE
from apollo_restore.train.loop import CHECKSUM_FILE, CONFIG_FILE, STATE_FILE
from apollo_restore.train.records import METRICS_FILE
from apollo_restore.train.ship import portable_paths

CARRY_ROOT = Path(__file__).resolve().parent.parent / "carry"
FILES = (STATE_FILE, CHECKSUM_FILE, CONFIG_FILE, METRICS_FILE)
FOLDERS = ("best",)  # once the run has validated
PLACEHOLDER = "${" + DATA_VARIABLE + "}"


def _data_root() -> str:
    value = os.environ.get(DATA_VARIABLE)
    if not value:
        sys.exit(f"error: set {DATA_VARIABLE} to the folder the run's data lives in")
    return str(Path(value).resolve())


def save(run: Path, carried: Path) -> None:
    """Copy the stopped run ``run`` into ``carried``, its config's paths made portable as a card's are."""
    _data_root()
    _copy(run, carried, lambda text: portable_paths(text, run))


def restore(carried: Path, run: Path) -> None:
    """Copy ``carried`` into the run directory ``run`` (replaced), ``${APOLLO_DATA}`` expanded."""
    root = _data_root()
    _copy(carried, run, lambda text: text.replace(PLACEHOLDER, root))  # train.run_dir: the resume's --run-dir


def _copy(source: Path, destination: Path, rewrite: Callable[[str], str]) -> None:
    """Copy the run's files from ``source`` into a fresh ``destination`` (built beside it, renamed into place),
    ``config.yaml``'s text passed through ``rewrite``."""
    missing = [name for name in FILES if not (source / name).exists()]
    if missing:
        sys.exit(f"error: {source} lacks {', '.join(missing)}")
    staging = destination.with_name(destination.name + ".part.carry")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in FILES:
        shutil.copy2(source / name, staging / name)
    for name in (folder for folder in FOLDERS if (source / folder).is_dir()):
        shutil.copytree(source / name, staging / name)
    config = staging / CONFIG_FILE
    config.write_text(rewrite(config.read_text()))
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    saving = sub.add_parser("save", help="copy a stopped run's resumable files into carry/NAME/")
    saving.add_argument("run", type=Path)
    saving.add_argument("name")
    restoring = sub.add_parser("restore", help="copy carry/NAME/ into a run directory (replaced if it exists)")
    restoring.add_argument("name")
    restoring.add_argument("run", type=Path)
    args = parser.parse_args()
    if args.command == "save":
        save(args.run, CARRY_ROOT / args.name)
        print(f"carried {args.run} to {CARRY_ROOT / args.name}")
    else:
        restore(CARRY_ROOT / args.name, args.run)
        print(f"restored {args.name} to {args.run}: resume with the run's apollo train command")


if __name__ == "__main__":
    main()
