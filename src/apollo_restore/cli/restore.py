"""`apollo restore`: files or folders in, restored WAV/FLAC out (mirrored tree for folders)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from apollo_restore.audio import INPUT_EXTENSIONS
from apollo_restore.cli.arguments import BLOCK_SECONDS, PRECISIONS, bounded
from apollo_restore.errors import ApolloError, one_line
from apollo_restore.files import claim, find_files, missing_input, same_file

NAME = "restore"
HELP = "restore lossy-compressed audio files or folders (WAV/FLAC/OGG/MP3 in, WAV/FLAC out)"
DEFAULT_OUTPUT_DIR = Path("restored")


def demo_clip() -> Path:
    """The MP3 clip shipped with the package for the README's first command (`apollo make-demo` builds it)."""
    from apollo_restore.data.demo import demo_folder

    return demo_folder() / "demo.mp3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", type=Path, help="audio files and/or folders (searched recursively)")
    parser.add_argument("--demo", action="store_true", help="restore the demo clip shipped with the package")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output file (one input, ending in .wav/.flac) or folder (default: ./restored)")
    parser.add_argument("--format", choices=("wav", "flac"), default="wav", help="container for folder outputs")
    parser.add_argument("--subtype", default=None,
                        help="sample format, e.g. FLOAT (WAV default), PCM_24 (FLAC default), PCM_16")
    parser.add_argument("--keep-sr", action="store_true", help="write at the input's sample rate, not the model's")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip inputs whose output exists or that another apollo process is restoring (so "
                             "several processes can share one folder)")
    parser.add_argument("--checkpoint", default=None,
                        help="model folder, .safetensors, reference .bin/.ckpt, or bundled name (default: default)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="network precision (auto: bf16/fp16 on CUDA, bf16 on CPUs with bf16 matrix units where "
                             "it measures faster, else fp32; int8: dynamically quantised linear layers, CPU; "
                             "default fp32)")
    parser.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                        help="run the network with torch (default) or onnxruntime (CPU, fp32; a .onnx "
                             "--checkpoint from apollo export, or any checkpoint exported on the fly)")
    parser.add_argument("--block-seconds", type=bounded(float, *BLOCK_SECONDS), default=None,
                        help="audio per model pass, 1 to 600 (default: what fits 96 MiB per channel, 10-60 s: 12 s "
                             "at 256x6); memory grows with it, the result does not change")
    parser.add_argument("--spectrogram", type=Path, default=None,
                        help="also write a before/after spectrogram PNG (one input only)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


def _collect(inputs: list[Path], output: Path | None, suffix: str) -> list[Job]:
    """Expand folders recursively; map each input to its output path (mirrored tree for folders)."""
    for item in inputs:
        if (problem := missing_input(item)) is not None:
            raise problem
    suffix_out = output.suffix.lower() if output is not None else ""
    if suffix_out in (*INPUT_EXTENSIONS, ".opus", ".m4a", ".aac") and suffix_out not in (".wav", ".flac"):
        raise ApolloError(f"{output}: restored audio is written as .wav or .flac")
    single_file = len(inputs) == 1 and output is not None and output.suffix.lower() in (".wav", ".flac")
    if single_file:
        if inputs[0].is_dir():
            raise ApolloError(f"{inputs[0]} is a folder: give an output folder, not a file")
        return _checked([Job(inputs[0], output)])
    out_dir = output or DEFAULT_OUTPUT_DIR
    if out_dir.suffix.lower() in (".wav", ".flac"):
        raise ApolloError(f"{out_dir}: an output file needs exactly one input file")
    jobs = []
    for item in inputs:
        if item.is_dir():
            files = find_files(item, INPUT_EXTENSIONS)
            if not files:
                raise ApolloError(f"{item}: no audio files ({', '.join(INPUT_EXTENSIONS)}) in this folder")
            jobs += [Job(f, (out_dir / f.relative_to(item)).with_suffix(suffix)) for f in files]
        else:
            jobs.append(Job(item, out_dir / (item.stem + suffix)))
    return _checked(jobs)


def _checked(jobs: list[Job]) -> list[Job]:
    """Refuse jobs that would overwrite their input or write one output twice."""
    seen: dict[str, Path] = {}
    for job in jobs:
        key = os.path.realpath(job.dst)
        if key in seen:
            raise ApolloError(f"{job.src} and {seen[key]} would both write {job.dst}")
        if same_file(job.dst, job.src):
            raise ApolloError(f"{job.src}: output would overwrite the input")
        seen[key] = job.src
    return jobs


def _load(args: argparse.Namespace, device):
    """The model and gate to restore with: torch, or the network through onnxruntime (``--engine onnx``)."""
    import tempfile

    from apollo_restore.checkpoint import load_checkpoint

    onnx_file = args.checkpoint is not None and str(args.checkpoint).lower().endswith(".onnx")
    if args.engine == "torch":
        if onnx_file:
            raise ApolloError(f"{args.checkpoint}: an ONNX file runs with --engine onnx")
        return load_checkpoint(args.checkpoint, device)
    from apollo_restore.export import OnnxApollo, export_onnx

    if device.type != "cpu" or args.precision not in ("fp32", "auto"):
        raise ApolloError("--engine onnx runs the float32 graph on the CPU (use --device cpu --precision fp32)")
    args.precision = "fp32"
    if onnx_file:
        return OnnxApollo(args.checkpoint), None
    model, gate = load_checkpoint(args.checkpoint, "cpu")
    with tempfile.TemporaryDirectory(prefix="apollo-onnx-") as tmp:
        return OnnxApollo(export_onnx(model, Path(tmp) / "network.onnx")), gate


def run(args: argparse.Namespace) -> int:
    from apollo_restore.audio import read_audio, resample
    from apollo_restore.inference import Restorer, pick_device

    inputs = list(args.inputs) + ([demo_clip()] if args.demo else [])
    if not inputs:
        raise ApolloError("no input: give audio files or folders, or --demo")
    output = args.output
    if args.demo and output is None and len(inputs) == 1:
        output = Path("restored.wav")
    jobs = _collect(inputs, output, "." + args.format)
    if args.spectrogram and len(jobs) != 1:
        raise ApolloError("--spectrogram needs exactly one input file")
    device = pick_device("cpu" if args.engine == "onnx" and args.device == "auto" else args.device)
    model, gate = _load(args, device)
    restorer = Restorer(model, device, args.block_seconds, gate, args.precision)
    failures = 0
    for job in jobs:
        with claim(job.dst) if args.skip_existing else contextlib.nullcontext(True) as mine:
            if not mine:
                why = "exists" if job.dst.exists() else "is being written by another apollo process"
                print(f"{job.src}: skipped ({job.dst} {why})")
                continue
            failures += not _restore_one(job, args, restorer, model.config.sample_rate, len(jobs))
    if args.spectrogram:
        from apollo_restore.evaluate.spectrogram import plot_spectrograms

        before, sr_before = read_audio(jobs[0].src)
        after, sr_after = read_audio(jobs[0].dst)
        plot_spectrograms([("input", resample(before, sr_before, sr_after)), ("restored", after)], sr_after,
                          args.spectrogram, title=f"{jobs[0].src.name}: before / after")
        print(f"spectrogram: {args.spectrogram}")
    if failures:
        raise ApolloError(f"{failures} of {len(jobs)} files failed")
    return 0


def _restore_one(job: Job, args: argparse.Namespace, restorer, sample_rate: int, jobs: int) -> bool:
    """Restore one job with a progress bar; False (after one error line) if it failed in a batch."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="s", unit_scale=1 / sample_rate, desc=job.src.name, leave=False,
               disable=args.quiet or None, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = restorer.restore_file(job.src, job.dst, args.subtype, args.keep_sr, progress)
    except ApolloError as error:
        if jobs == 1:
            raise
        print(f"apollo restore: error: {one_line(error)}", file=sys.stderr)
        return False
    finally:
        bar.close()
    print(result.summary())
    return True
