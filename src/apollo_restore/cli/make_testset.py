"""`apollo make-testset OUT --root DATA`: pre-render a validation/test set of clean + degraded pairs."""

from __future__ import annotations

import argparse

NAME = "make-testset"
HELP = "pre-render clean/degraded clip pairs with bitrate and category (manifest.jsonl) from a dataset split"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="set folder (manifest.jsonl, clean/, degraded/)")
    parser.add_argument("--root", action="append", required=True, help="dataset folder (repeatable)")
    parser.add_argument("--layout", action="append", choices=["musdb", "moisesdb", "folder"],
                        help="layout of each --root (one for all, or one per root; default folder)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--per-bitrate", type=int, default=20, help="clips per bitrate (default 20)")
    parser.add_argument("--bitrates", type=int, nargs="+", default=[24, 32, 48, 64, 96, 128])
    parser.add_argument("--codec", default="mp3", choices=["mp3", "aac", "opus"])
    parser.add_argument("--clip-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from apollo_restore.data import MixConfig, build_testset
    from apollo_restore.degrade import DegradeConfig

    config = MixConfig(roots=tuple(args.root), layouts=tuple(args.layout or ["folder"]),
                       clip_seconds=args.clip_seconds, degrade=DegradeConfig(args.codec, tuple(args.bitrates)))
    examples = build_testset(config, args.output, args.per_bitrate, args.seed, args.split, progress=True)
    categories = Counter(e.category for e in examples)
    print(f"{args.output}: {len(examples)} pairs ({', '.join(f'{k} {v}' for k, v in sorted(categories.items()))})")
    return 0
