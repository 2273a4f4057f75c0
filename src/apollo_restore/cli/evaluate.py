"""`apollo evaluate`: the paper's Table II and Figure 2 (plus LSD) for checkpoints and external systems."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from apollo_restore.cli.arguments import BLOCK_SECONDS, MAX_WORKERS, PRECISIONS, bounded
from apollo_restore.errors import ApolloError

NAME = "evaluate"
HELP = "score checkpoints / external outputs on a test set: SDR, SI-SNR, ViSQOL, LSD; Table II and Figure 2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, metavar="TESTSET",
                        help="pre-rendered test set folder (with manifest.jsonl)")
    source.add_argument("--pairs", type=Path, metavar="DIR",
                        help="folder with reference/, degraded/ and optional <system>/ subfolders "
                             "(see docs/evaluation.md)")
    parser.add_argument("--checkpoint", action="append", default=None, metavar="C",
                        help="checkpoint to restore with (repeatable; bundled name, folder or file). "
                             "Default with --data: the bundled default model")
    parser.add_argument("--name", action="append", default=None, help="system name for each --checkpoint")
    parser.add_argument("--compare", action="append", type=Path, default=[], metavar="RESULTS_JSON",
                        help="results.json of another evaluate run to include in the table and figure")
    parser.add_argument("-o", "--out", type=Path, default=Path("evaluation"),
                        help="output folder (results, table.md, figure2.png, restored audio, cache)")
    parser.add_argument("--per-cell", type=bounded(int, 1, 10**9), default=None, metavar="N",
                        help="use at most N examples per (bitrate, category), in the set's rank order "
                             "(a real-music set spreads them over recordings and sources), then by id")
    parser.add_argument("--ids", type=Path, default=None, metavar="FILE",
                        help="use only the example ids listed in FILE (one per line)")
    parser.add_argument("--jobs", type=bounded(int, 1, MAX_WORKERS), default=os.cpu_count() or 1,
                        help="scoring processes")
    parser.add_argument("--device", default="auto", help="device for restoring: auto (default), cpu, cuda, ...")
    parser.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (the slowest metric)")
    parser.add_argument("--rtf-iterations", type=bounded(int, 0, 100000), default=5, metavar="N",
                        help="1 s forwards timed per checkpoint for the RTF column (0: skip)")
    parser.add_argument("--block-seconds", type=bounded(float, *BLOCK_SECONDS), default=None,
                        help="audio per model pass when restoring (default: as apollo restore)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="network precision of the checkpoints (as apollo restore; default fp32)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from apollo_restore.evaluate import report, runner, sources

    if args.per_cell is not None and args.per_cell < 1:
        raise ApolloError("--per-cell must be at least 1")
    if args.jobs < 1:
        raise ApolloError("--jobs must be at least 1")
    evalset = sources.load_testset(args.data) if args.data else sources.load_pairs(args.pairs)
    ids = sources.read_ids(args.ids) if args.ids else None
    evalset.examples = sources.subset(evalset.examples, args.per_cell, ids)
    checkpoints = args.checkpoint if args.checkpoint is not None else ([None] if args.data else [])
    config = runner.EvalConfig(out_dir=args.out, checkpoints=tuple(checkpoints), names=tuple(args.name or ()),
                               device=None if args.device in (None, "auto") else args.device, jobs=args.jobs,
                               visqol=not args.no_visqol, block_seconds=args.block_seconds, precision=args.precision,
                               rtf_iterations=max(0, args.rtf_iterations),
                               progress=not args.quiet)
    rows, systems = runner.evaluate(evalset, config)
    for other in args.compare:
        other_rows, other_systems = report.load_results(other)
        rows, systems = report.merge_results(rows, systems, other_rows, other_systems, other.parent.name or "other")
    paths = report.write_report(rows, systems, args.out, title=f"Evaluation of {Path(evalset.source).name}")
    print(report.table2_markdown(rows, systems))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
