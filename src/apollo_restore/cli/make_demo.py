"""`apollo make-demo`: the package's demo clip from a song of `apollo make-data` (maintainers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from apollo_restore.cli.arguments import bounded

NAME = "make-demo"
HELP = "build the demo clip shipped with the package from one song folder of `apollo make-data`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("song", type=Path, help="song folder (meta.json + stems), e.g. DATA/test/<song>")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for demo.mp3 + README.md (default: the package's assets/demo)")
    parser.add_argument("--bitrate", type=bounded(int, 8, 320), default=32,
                        help="MP3 CBR bitrate, kbit/s (default 32)")
    parser.add_argument("--seconds", type=bounded(float, 1, 600), default=12.0,
                        help="clip length (default 12 s)")


def run(args: argparse.Namespace) -> int:
    from apollo_restore.data.demo import make_demo

    path = make_demo(args.song, args.output, args.bitrate, args.seconds)
    print(f"{path}: {args.seconds:g} s of {args.song.name} at {args.bitrate} kbit/s")
    return 0
