"""`apollo degrade IN OUT`: encode and decode a file (or a folder tree) with a lossy codec, aligned with IN."""

from __future__ import annotations

import argparse
import contextlib

from apollo_restore.cli.arguments import bounded

NAME = "degrade"
HELP = "simulate a lossy codec (MP3/AAC/Opus/low-pass) on a file or folder; output is sample-aligned with IN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file, or folder (searched recursively)")
    parser.add_argument("output", help="output file (.wav float32 / .flac 24-bit), or folder for a folder input "
                        "(mirrored tree, files already there are skipped)")
    parser.add_argument("--codec", default="mp3", choices=("mp3", "aac", "opus", "lowpass"))
    parser.add_argument("--bitrate", type=bounded(int, 6, 512), default=128,
                        help="CBR kbit/s (default 128; see docs/data.md "
                        "for what 24 kbps means at 44.1 kHz)")
    parser.add_argument("--vbr-quality", type=bounded(int, 0, 9), default=None, metavar="V",
                        help="MP3 only: LAME VBR quality 0 (best) .. 9 instead of a CBR bitrate")
    parser.add_argument("--cutoff-hz", type=bounded(float, 1, 192000), default=None,
                        help="low-pass only: cutoff frequency")
    parser.add_argument("--subtype", default=None, help="output sample format, e.g. PCM_16, PCM_24, FLOAT")
    parser.add_argument("--format", default="flac", choices=("flac", "wav"),
                        help="output container for a folder input (default flac)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from apollo_restore.audio import INPUT_EXTENSIONS, output_subtype, read_audio, write_audio
    from apollo_restore.degrade import Degradation, degrade_with_info
    from apollo_restore.errors import ApolloError
    from apollo_restore.files import claim, find_files, missing_input, same_file

    degradation = Degradation(args.codec, args.bitrate, args.vbr_quality, args.cutoff_hz)
    source, output = Path(args.input), Path(args.output)
    if (problem := missing_input(source)) is not None:
        raise problem
    if source.is_dir():
        files = find_files(source, INPUT_EXTENSIONS)
        if not files:
            raise ApolloError(f"{source}: no audio files ({', '.join(INPUT_EXTENSIONS)}) in this folder")
        jobs = [(p, output / p.relative_to(source).with_suffix(f".{args.format}")) for p in files]
    else:
        jobs = [(source, output)]
    for path, out in jobs:
        if same_file(path, out):
            raise ApolloError(f"{path}: output would overwrite the input")
    output_subtype(jobs[0][1], args.subtype)  # reject a bad output early
    for path, out in tqdm(jobs, desc=degradation.label, unit="file", disable=len(jobs) < 2):
        with claim(out) if source.is_dir() else contextlib.nullcontext(True) as mine:
            if not mine:  # a folder's outputs that exist (or that another process is writing) are skipped
                continue
            audio, rate = read_audio(path)
            degraded, kbps = degrade_with_info(audio, rate, degradation)
            clipped = write_audio(out, degraded, rate, args.subtype)
        rate_note = f", {kbps} kbit/s stream" if kbps else ""
        tqdm.write(f"{out}: {degradation.label}{rate_note}, {audio.shape[1] / rate:.1f} s"
                   + (f" ({clipped} samples clipped)" if clipped else ""))
    return 0
