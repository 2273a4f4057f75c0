"""`apollo data-stats A [B ...] REFERENCE -o report/`: realism statistics of sets of audio against a reference."""

from __future__ import annotations

import argparse
from pathlib import Path

from apollo_restore.cli.arguments import bounded

NAME = "data-stats"
HELP = ("compare sets of audio with a reference set (the last): 1/3-octave band energies 2-20 kHz, frames "
        "with content above 16 kHz, top-octave flatness and change, crest, loudness, stereo width")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sets", nargs="+",
                        help="pair sets (manifest.jsonl), stem datasets (folder layout), folders of audio files, "
                             "or CLIPS.csv:NAME (set NAME as measured in an earlier report); the last one is the "
                             "reference")
    parser.add_argument("-o", "--out", type=Path, required=True,
                        help="report folder: table.md, figure.png, clips.csv, summary.csv, summary.json")
    parser.add_argument("--names", nargs="+", default=None, help="one display name per set (default: folder names)")
    parser.add_argument("--clips", type=bounded(int, 1, 1000000), default=200,
                        help="clips drawn from each stem dataset (default 200)")
    parser.add_argument("--clip-seconds", type=bounded(float, 0.1, 3600), default=10.0,
                        help="length of the clips drawn from a stem dataset's songs (default 10)")
    parser.add_argument("--split", nargs="+", default=["train", "valid", "test"],
                        choices=["train", "valid", "test"], help="splits of a stem dataset to draw from")
    parser.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def measured_rows_form(argument: str) -> bool:
    return argument.rpartition(":")[0].endswith(".csv")


def run(args: argparse.Namespace) -> int:
    from apollo_restore.data.realism import clip_sources, measure, measured_rows, write_report
    from apollo_restore.errors import ApolloError

    if len(args.sets) < 2:
        raise ApolloError("give at least two sets: the ones to compare, then the reference")
    names = args.names or [argument.rpartition(":")[2] if measured_rows_form(argument) else Path(argument).name
                           for argument in args.sets]
    if len(names) != len(args.sets):
        raise ApolloError(f"{len(names)} names for {len(args.sets)} sets")
    if args.clips < 1 or args.clip_seconds <= 0:
        raise ApolloError("--clips must be >= 1 and --clip-seconds positive")
    rows = []
    for name, argument in zip(names, args.sets, strict=True):
        earlier = measured_rows(argument)
        if earlier is None:
            sources = clip_sources(argument, args.clips, args.clip_seconds, args.seed, tuple(args.split))
            earlier = measure(sources, progress=not args.quiet, desc=name)
        rows.append(earlier)
    paths = write_report(names, rows, args.out)
    print(paths["table"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
