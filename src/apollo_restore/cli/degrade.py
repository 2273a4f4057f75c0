"""`apollo degrade IN OUT`: encode and decode a file with a lossy codec, aligned with the input."""

from __future__ import annotations

import argparse

NAME = "degrade"
HELP = "simulate a lossy codec (MP3/AAC/Opus/low-pass) on a file; the output is sample-aligned with IN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file to degrade")
    parser.add_argument("output", help="where to write the decoded result (.wav float32 or .flac 24-bit)")
    parser.add_argument("--codec", default="mp3", choices=("mp3", "aac", "opus", "lowpass"))
    parser.add_argument("--bitrate", type=int, default=128, help="CBR kbit/s (default 128; see docs/data.md "
                        "for what 24 kbps means at 44.1 kHz)")
    parser.add_argument("--vbr-quality", type=int, default=None, metavar="V",
                        help="MP3 only: LAME VBR quality 0 (best) .. 9 instead of a CBR bitrate")
    parser.add_argument("--cutoff-hz", type=float, default=None, help="low-pass only: cutoff frequency")
    parser.add_argument("--subtype", default=None, help="output sample format, e.g. PCM_16, PCM_24, FLOAT")


def run(args: argparse.Namespace) -> int:
    from apollo_restore.audio import output_subtype, read_audio, write_audio
    from apollo_restore.degrade import Degradation, degrade_with_info

    spec = Degradation(args.codec, args.bitrate, args.vbr_quality, args.cutoff_hz)
    output_subtype(args.output, args.subtype)  # reject a bad output name before any work
    audio, rate = read_audio(args.input)
    degraded, kbps = degrade_with_info(audio, rate, spec)
    clipped = write_audio(args.output, degraded, rate, args.subtype)
    rate_note = f", {kbps} kbit/s stream" if kbps else ""
    print(f"{args.output}: {spec.label}{rate_note}, {audio.shape[1] / rate:.1f} s"
          + (f" ({clipped} samples clipped)" if clipped else ""))
    return 0
