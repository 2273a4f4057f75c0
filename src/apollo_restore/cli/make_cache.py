"""`apollo make-cache OUT --root DATA --examples N`: pre-render training pairs into shards (no encoder in training)."""

from __future__ import annotations

import argparse

from apollo_restore.cli.arguments import MAX_WORKERS, bounded

NAME = "make-cache"
HELP = ("pre-render the on-the-fly training pairs (1-8 stem remixes or real mixtures, MP3 at drawn bitrates) "
        "into shards that `apollo train` reads with data.pair_cache; resumable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="cache folder (cache.json, shard-NNNNN.npy + .jsonl)")
    parser.add_argument("--config", help="training YAML whose data section to render (instead of --root ...)")
    parser.add_argument("--root", action="append", help="dataset folder (repeatable)")
    parser.add_argument("--layout", action="append", choices=["musdb", "moisesdb", "folder"],
                        help="layout of each --root (one for all, or one per root; default folder)")
    parser.add_argument("--split", default="train", choices=["train", "valid", "test"])
    parser.add_argument("--examples", type=bounded(int, 1, 10**9), required=True,
                        help="pairs to render (rounded up to whole shards)")
    parser.add_argument("--clip-seconds", type=bounded(float, 0.1, 3600), default=3.0)
    parser.add_argument("--bitrates", type=bounded(int, 6, 512), nargs="+", default=[24, 32, 48, 64, 96, 128])
    parser.add_argument("--codec", default="mp3", choices=["mp3", "aac", "opus"])
    parser.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0)
    parser.add_argument("--shard-size", type=bounded(int, 1, 100000), default=256, help="pairs per shard (default 256)")
    parser.add_argument("-j", "--jobs", type=bounded(int, 1, MAX_WORKERS), default=2,
                        help="render processes (default 2)")
    parser.add_argument("-q", "--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from apollo_restore.data import MixConfig
    from apollo_restore.data.cache import build_cache
    from apollo_restore.degrade import DegradeConfig
    from apollo_restore.errors import ApolloError

    if args.config:
        from apollo_restore.train.config import load_config

        config = dataclasses.replace(load_config(args.config).data, pair_cache=None)
    elif args.root:
        config = MixConfig(roots=tuple(args.root), layouts=tuple(args.layout or ["folder"]),
                           clip_seconds=args.clip_seconds, degrade=DegradeConfig(args.codec, tuple(args.bitrates)))
    else:
        raise ApolloError("give --config CONFIG.yaml or --root DATA")
    out = build_cache(config, args.output, args.examples, args.seed, args.split, args.shard_size, args.jobs,
                      progress=not args.quiet)
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**30
    print(f"{out}: {len(list(out.glob('shard-*.npy')))} shards, {size:.2f} GiB")
    return 0
