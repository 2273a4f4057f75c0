"""`apollo train CONFIG.yaml`: GAN training of the generator (runs alone or under torchrun)."""

from __future__ import annotations

import argparse

from apollo_restore.cli.arguments import bounded

NAME = "train"
HELP = "train an Apollo generator with the paper's GAN recipe (resumes a run directory holding state.pt)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config (see configs/paper.yaml, configs/cpu.yaml)")
    parser.add_argument("--run-dir", help="run directory (overrides train.run_dir)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.max_steps=100 (repeatable; value is YAML)",
    )
    parser.add_argument(
        "--bench", type=bounded(int, 1, 100000), metavar="STEPS",
        help="do not train: time STEPS GAN and STEPS reconstruction-only steps of this config on random clips",
    )


def _bench(config, steps: int) -> int:
    from apollo_restore.train.step_timing import describe, peak_rss_gib, time_training_steps

    if steps < 1:
        from apollo_restore.errors import ApolloError

        raise ApolloError("--bench needs at least 1 step")
    print(describe(config))
    for adversarial in (True, False):
        t = time_training_steps(config, steps, adversarial)
        kind = "GAN step" if adversarial else "reconstruction-only step"
        print(f"{kind}: {t.steps_per_second:.4f} steps/s ({t.seconds_per_step:.2f} s/step wall, "
              f"{t.cpu_seconds_per_step:.2f} CPU-s/step)")
    print(f"peak memory: {peak_rss_gib():.2f} GiB")
    return 0


def run(args: argparse.Namespace) -> int:
    from apollo_restore.train.config import load_config
    from apollo_restore.train.loop import train

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"train.run_dir={args.run_dir}")
    config = load_config(args.config, overrides)
    if args.bench is not None:
        return _bench(config, args.bench)
    reason = train(config)
    return 130 if reason.startswith("interrupted") else 0
