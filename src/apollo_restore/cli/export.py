"""`apollo export --onnx CHECKPOINT OUT.onnx`: the generator's network as ONNX, for onnxruntime and apps."""

from __future__ import annotations

import argparse
from pathlib import Path

from apollo_restore.errors import ApolloError

NAME = "export"
HELP = ("export a checkpoint's network to ONNX (spectrum in, restored spectrum out; a causal model's streaming step "
        "with its state; see docs/evaluation.md and docs/streaming.md)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", nargs=2, metavar=("CHECKPOINT", "OUT.onnx"), required=True,
                        help="checkpoint (folder, file or bundled name) and the .onnx file to write")


def run(args: argparse.Namespace) -> int:
    from apollo_restore.checkpoint import load_checkpoint
    from apollo_restore.export import export_onnx, state_shape

    source, out = args.onnx[0], Path(args.onnx[1])
    if out.suffix.lower() != ".onnx":
        raise ApolloError(f"{out}: the output must be an .onnx file")
    model, gate = load_checkpoint(source)
    export_onnx(model, out)
    c = model.config
    if c.causal:
        shape = [str(n) for n in state_shape(c, 1)]
        shape[1] = "channels"
        inputs = (f"inputs real/imag [channels, frames, {c.num_bins}] and state [{', '.join(shape)}] "
                  "(the streaming step)")
    else:
        inputs = (f"inputs real/imag [batch, frames, {c.num_bins}], context {c.context_frames[0]}/"
                  f"{c.context_frames[1]} frames")
    print(f"{source} -> {out}: Apollo {c.feature_dim}x{c.num_layers}, {inputs}"
          + (" (the checkpoint's gate is not part of the graph: apply it to the restored spectrum)" if gate else ""))
    return 0
