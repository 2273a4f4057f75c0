"""`apollo bench`: real-time factor (paper protocol), long-input throughput, memory, FLOP efficiency."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from apollo_restore.cli.arguments import MAX_CHANNELS, MAX_WORKERS, PRECISIONS, bounded
from apollo_restore.errors import ApolloError

NAME = "bench"
HELP = "measure RTF (1 s, paper protocol), 10/60 s throughput, peak memory, params and GFLOP/s vs matmul"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", default=[], metavar="DIMxLAYERS",
                        help="model size such as 64x2 or 256x6 (repeatable; random weights)")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="checkpoint to measure (repeatable; bundled name, folder or file)")
    parser.add_argument("--device", action="append", default=[],
                        help="cpu, cuda, ... (repeatable; default: cpu, plus cuda when present)")
    parser.add_argument("-n", "--iterations", type=bounded(int, 1, 100000), default=10,
                        help="timed 1 s forwards (default 10)")
    parser.add_argument("--warmup", type=bounded(int, 0, 100000), default=2, help="untimed forwards first (default 2)")
    parser.add_argument("--channels", type=bounded(int, 1, MAX_CHANNELS), default=1,
                        help="channels of the 1 s input (default 1)")
    parser.add_argument("--long", type=bounded(float, 0.01, 36000), nargs="*", default=[10.0, 60.0], metavar="SECONDS",
                        help="stereo clip lengths through restore (default: 10 60; none: skip)")
    parser.add_argument("--threads", type=bounded(int, 1, MAX_WORKERS), default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--precision", action="append", default=[], choices=PRECISIONS,
                        help="network precision (repeatable; default: fp32 and bf16 side by side; the long "
                             "inputs run for the first one only)")
    parser.add_argument("--engine", action="append", default=[], choices=("torch", "onnx"),
                        help="torch (default) and/or onnx (onnxruntime, fp32, CPU; repeatable)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="also write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    import torch

    from apollo_restore.evaluate.bench import BenchConfig, format_table, run_isolated
    from apollo_restore.files import atomic_write_text

    models = [{"size": s} for s in args.config] + [{"checkpoint": c} for c in args.checkpoint]
    if not models:
        raise ApolloError("give --config DIMxLAYERS and/or --checkpoint")
    if args.channels < 1 or any(s <= 0 for s in args.long):
        raise ApolloError("--channels must be >= 1 and --long lengths positive")
    if args.output is not None and args.output.suffix.lower() != ".json":
        raise ApolloError(f"{args.output}: the output must be a .json file")
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    runs = [(p, "torch") for p in (args.precision or ["fp32", "bf16"])]
    runs += [("fp32", engine) for engine in args.engine if engine != "torch"]
    results = []
    for model in models:
        for device in devices:
            for index, (precision, engine) in enumerate(runs):
                config = BenchConfig(**model, device=device, iterations=args.iterations, warmup=args.warmup,
                                     channels=args.channels, long_seconds=tuple(args.long) if index == 0 else (),
                                     threads=args.threads, precision=precision, engine=engine)
                if config.size is not None:
                    from apollo_restore.model import ApolloConfig

                    ApolloConfig.from_size(config.size)  # a bad size fails here, not in the worker
                results.append(run_isolated(config))
                print(f"done: {config.label} on {device}", flush=True)
    print(format_table(results))
    if args.output is not None:
        atomic_write_text(args.output, json.dumps({"results": [r.to_dict() for r in results]}, indent=1) + "\n")
        print(f"written: {args.output}")
    return 0
