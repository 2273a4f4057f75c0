"""`apollo make-data OUT`: render an offline multi-stem training dataset from real scores and recordings."""

from __future__ import annotations

import argparse

from apollo_restore.cli.arguments import MAX_WORKERS, bounded

NAME = "make-data"
HELP = ("render produced multi-stem songs (music21 scores; full-band SoundFont presets, real drums, loops and "
        "guitar, synths, formant singers; mixed and mastered) into a folder-layout dataset; resumable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="dataset folder (OUT/<split>/<song>/<stem>.flac + meta.json)")
    parser.add_argument("--hours", type=bounded(float, 0.001, 100000), default=1.0,
                        help="hours of songs over all splits (default 1)")
    parser.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0)
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"],
                        choices=["train", "valid", "test"], help="shares 80/10/10 (renormalised)")
    parser.add_argument("--max-seconds", type=bounded(float, 1, 36000), default=150.0,
                        help="longest song (default 150 s)")
    parser.add_argument("-j", "--jobs", type=bounded(int, 1, MAX_WORKERS), default=2,
                        help="parallel render processes (default 2)")
    parser.add_argument("--soundfont-dir", default="/usr/share/sounds/sf2",
                        help="folder with FluidR3_GM.sf2, TimGM6mb.sf2, MuseScore_General_Full.sf2")
    parser.add_argument("--report", type=bounded(int, 0, 100000), default=0, metavar="N",
                        help="afterwards, measure the energy above 16 kHz of N real 3 s mixes per split, "
                             "clean and MP3-coded at each paper bitrate")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from apollo_restore.data.generator.make import GeneratorConfig, generate
    from apollo_restore.errors import ApolloError

    if args.hours <= 0:
        raise ApolloError("--hours must be positive")
    config = GeneratorConfig(args.output, args.hours, args.seed, tuple(args.splits), args.max_seconds,
                             args.jobs, args.soundfont_dir)
    summary = generate(config, progress=not args.quiet)
    minutes, cpu_minutes = summary["wall_seconds"] / 60, summary["cpu_seconds"] / 60
    print(f"{args.output}: rendered {summary['songs']} songs, {summary['song_seconds'] / 60:.1f} min of songs, "
          f"{summary['stem_seconds'] / 60:.1f} min of stems in {minutes:.1f} min "
          f"({summary['stem_seconds'] / 60 / max(minutes, 1e-9):.0f} min of stems per minute; "
          f"{summary['stem_seconds'] / 60 / max(cpu_minutes, 1e-9):.1f} per CPU-minute); "
          f"{summary['resumed']} songs already there, {len(summary['skipped'])} scores skipped")
    for reason in summary["skipped"][:5]:
        print(f"  skipped: {reason}")
    if args.report:
        from apollo_restore.data import MixConfig
        from apollo_restore.data.stats import band_report

        for split in args.splits:
            report = band_report(MixConfig(roots=args.output, layouts="folder"), split, args.report, args.seed)
            cells = ", ".join(f"{k} {np.median(v):.1f}" for k, v in report.items())
            print(f"{split}: median energy above 16 kHz (dB re total) over {args.report} mixes: {cells}")
    return 0
