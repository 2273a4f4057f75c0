"""`apollo train CONFIG.yaml`: GAN training of the generator (runs alone or under torchrun)."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train an Apollo generator with the paper's GAN recipe (resumes a run directory holding state.pt)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config (see configs/paper.yaml, configs/cpu.yaml)")
    parser.add_argument("--run-dir", help="run directory (overrides train.run_dir)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.max_steps=100 (repeatable; value is YAML)",
    )


def run(args: argparse.Namespace) -> int:
    from apollo_restore.train.config import load_config
    from apollo_restore.train.loop import train

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"train.run_dir={args.run_dir}")
    config = load_config(args.config, overrides)
    reason = train(config)
    return 130 if reason.startswith("interrupted") else 0
