"""`apollo make-testset OUT --root DATA | --mixtures DIR`: pre-render clean + degraded pairs for evaluation."""

from __future__ import annotations

import argparse

from apollo_restore.cli.arguments import bounded

NAME = "make-testset"
HELP = ("pre-render clean/degraded pairs with bitrate and category (manifest.jsonl) from a dataset split, "
        "or from a folder of finished recordings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="set folder (manifest.jsonl, clean/, degraded/)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", action="append", help="stem dataset folder (repeatable)")
    source.add_argument("--mixtures", metavar="DIR",
                        help="folder of recordings (no stems): each whole file is coded at every bitrate; "
                             "category from DIR/manifest.csv (columns file, category) or 'mixture'")
    parser.add_argument("--layout", action="append", choices=["musdb", "moisesdb", "folder"],
                        help="layout of each --root (one for all, or one per root; default folder)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--per-bitrate", type=bounded(int, 1, 1000000), default=20,
                        help="clips per bitrate from --root (default 20)")
    parser.add_argument("--bitrates", type=bounded(int, 6, 512), nargs="+", default=[24, 32, 48, 64, 96, 128])
    parser.add_argument("--codec", default="mp3", choices=["mp3", "aac", "opus"])
    parser.add_argument("--clip-seconds", type=bounded(float, 0.1, 3600), default=3.0,
                        help="clip length from --root (default 3)")
    parser.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0)


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from apollo_restore.data import MixConfig, build_mixture_testset, build_testset
    from apollo_restore.degrade import DegradeConfig

    degrade = DegradeConfig(args.codec, tuple(args.bitrates))
    if args.mixtures:
        examples = build_mixture_testset(args.mixtures, args.output, degrade, progress=True)
    else:
        config = MixConfig(roots=tuple(args.root), layouts=tuple(args.layout or ["folder"]),
                           clip_seconds=args.clip_seconds, degrade=degrade)
        examples = build_testset(config, args.output, args.per_bitrate, args.seed, args.split, progress=True)
    categories = Counter(e.category for e in examples)
    print(f"{args.output}: {len(examples)} pairs ({', '.join(f'{k} {v}' for k, v in sorted(categories.items()))})")
    return 0
