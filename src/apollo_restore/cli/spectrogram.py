"""`apollo spectrogram`: side-by-side spectrograms of audio files (e.g. input / restored / reference)."""

from __future__ import annotations

import argparse
from pathlib import Path

from apollo_restore.cli.arguments import bounded
from apollo_restore.errors import ApolloError

NAME = "spectrogram"
HELP = "plot side-by-side log-magnitude spectrograms of audio files into one PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files, one panel each, left to right")
    parser.add_argument("-o", "--output", type=Path, required=True, help="image file (.png, .pdf or .svg)")
    parser.add_argument("--labels", nargs="+", default=None, help="panel titles (default: file names)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--start", type=bounded(float, 0, 1e7), default=0.0, help="seconds to skip in every file")
    parser.add_argument("--duration", type=bounded(float, 0.001, 1e7), default=None,
                        help="seconds to show (default: all)")


def run(args: argparse.Namespace) -> int:
    from apollo_restore.audio import read_audio, resample
    from apollo_restore.evaluate.spectrogram import plot_spectrograms

    if args.labels is not None and len(args.labels) != len(args.inputs):
        raise ApolloError(f"{len(args.labels)} labels for {len(args.inputs)} files")
    if args.start < 0 or (args.duration is not None and args.duration <= 0):
        raise ApolloError("--start must be >= 0 and --duration > 0")
    labels = args.labels or [path.name for path in args.inputs]
    loaded = [read_audio(path) for path in args.inputs]
    rate = max(sr for _, sr in loaded)  # every panel at the highest rate, so a low-rate input shows its gap
    panels = []
    for label, path, (audio, sr) in zip(labels, args.inputs, loaded, strict=True):
        audio = resample(audio, sr, rate)
        first = int(args.start * rate)
        last = None if args.duration is None else first + int(args.duration * rate)
        if first >= audio.shape[1]:
            raise ApolloError(f"{path}: shorter than --start {args.start:g} s")
        panels.append((label, audio[:, first:last]))
    written = plot_spectrograms(panels, rate, args.output, title=args.title)
    print(f"written: {written}")
    return 0
