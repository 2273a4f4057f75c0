"""`apollo convert`: any supported checkpoint layout -> our native folder (model.safetensors + config.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from apollo_restore.cli.arguments import bounded

NAME = "convert"
HELP = "convert a reference/community Apollo checkpoint (.bin/.ckpt/.pth/.safetensors) to the native format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="checkpoint file or folder to read (never unpickles code)")
    parser.add_argument("destination", type=Path, help="output folder for model.safetensors + config.json")
    parser.add_argument("--sample-rate", type=bounded(int, 4000, 384000), default=None,
                        help="override the sample rate inferred from the STFT size")


def run(args: argparse.Namespace) -> int:
    from apollo_restore.checkpoint import load_model, save_model

    model = load_model(args.source, "cpu", args.sample_rate)
    c = model.config
    card = (f"# Apollo {c.feature_dim}x{c.num_layers}\n\nConverted by `apollo convert` from `{Path(args.source).name}`."
            f"\n\n{model.num_parameters():,} parameters, {c.sample_rate} Hz, {c.num_bands} bands.\n")
    save_model(model, args.destination, card)
    print(f"{args.source} -> {args.destination}: Apollo {c.feature_dim}x{c.num_layers}, "
          f"{model.num_parameters():,} parameters, {c.sample_rate} Hz")
    return 0
