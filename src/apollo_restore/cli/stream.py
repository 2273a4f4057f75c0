"""`apollo stream`: real-time restoration with a causal model, from a file or raw f32le PCM on stdin.

A file is fed in chunks of ``--chunk-ms`` on a simulated real-time clock; raw PCM (``--raw``) is read from a
file or stdin (``-``) and written to stdout as it becomes final, so it can sit in a pipe between ffmpeg and
ffplay. Per-frame compute time, real-time factor and latency go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from apollo_restore.cli.arguments import MAX_CHANNELS, MAX_WORKERS, bounded
from apollo_restore.errors import ApolloError

if TYPE_CHECKING:
    from apollo_restore.streaming import StreamingRestorer

NAME = "stream"
HELP = "restore in real time with a causal model: a file in chunks, or raw f32le PCM stdin -> stdout"
STDIO = "-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file, or raw f32le PCM with --raw ('-' = stdin)")
    parser.add_argument("-o", "--output", default=None,
                        help="output .wav/.flac (written atomically), or '-' for raw f32le on stdout "
                             "(the default with --raw)")
    parser.add_argument("--raw", action="store_true", help="input is headerless interleaved float32 little-endian")
    parser.add_argument("--channels", type=bounded(int, 1, MAX_CHANNELS), default=None,
                        help="channels of the raw input (--raw)")
    parser.add_argument("--rate", type=bounded(int, 1, 768000), default=None,
                        help="sample rate of the raw input (--raw); must be the model's (44100: ffmpeg -ar 44100)")
    parser.add_argument("--chunk-ms", type=bounded(float, 1, 60000), default=10.0,
                        help="audio per call to the model (default 10)")
    parser.add_argument("--gain-db", type=bounded(float, -120, 120), default=0.0,
                        help="level change before the model, undone after (default 0: full-scale input assumed)")
    parser.add_argument("--checkpoint", default="causal",
                        help="causal model: folder, file or bundled name (default: causal)")
    parser.add_argument("--config", default=None, metavar="DIMxLAYERS",
                        help="instead of a checkpoint, a causal model of this size with random weights (timing only)")
    parser.add_argument("--subtype", default=None, help="sample format of a .wav/.flac output, e.g. PCM_24")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the one-frame step (needs a C++ compiler; slow start, faster frames)")
    parser.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                        help="run the network with torch (default) or its ONNX export through onnxruntime (CPU; the "
                             "onnx extra)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=bounded(int, 1, MAX_WORKERS), default=1,
                        help="torch CPU threads (default 1: one frame per call is too little work to share, and "
                             "spinning threads make the worst case far worse on a busy machine)")


def _model(args: argparse.Namespace, device: object):
    """(causal model, its gate or None) from ``--checkpoint``, or a random one of ``--config``'s size."""
    from apollo_restore.checkpoint import load_checkpoint
    from apollo_restore.model import Apollo, ApolloConfig

    if args.config is None:
        return load_checkpoint(args.checkpoint, device)
    import torch

    print(f"apollo stream: random {args.config} causal model: timing only, the output is not a restoration",
          file=sys.stderr)
    torch.manual_seed(0)
    return Apollo(ApolloConfig.from_size(args.config, causal=True)).to(device).eval(), None


def _raw_chunks(handle: BinaryIO, channels: int, length: int) -> Iterator[np.ndarray]:
    """Interleaved f32le from ``handle`` as ``[channels, n]`` blocks of up to ``length`` samples."""
    size = 4 * channels
    while True:
        data = handle.read(length * size)
        if not data:
            return
        if len(data) % size:
            raise ApolloError(f"raw input ended inside a frame ({len(data) % size} stray bytes; "
                              f"is it f32le with {channels} channels?)")
        yield np.frombuffer(data, dtype="<f4").reshape(-1, channels).T


def _file_chunks(path: Path, rate: int, chunk_ms: float) -> tuple[Iterator[np.ndarray], int]:
    """Blocks of ``chunk_ms`` from an audio file, resampled to ``rate`` on the fly; and the channel count.

    The file is decoded as `apollo restore` decodes it (one gapless pass, re-cut into chunks)."""
    from apollo_restore.audio import ResampleStream, open_audio

    reader = open_audio(path)
    info = reader.info
    to_model = ResampleStream(info.sample_rate, rate, info.channels)
    length = max(1, round(chunk_ms * info.sample_rate / 1000))

    def chunks() -> Iterator[np.ndarray]:
        with reader:
            pending = None
            for block in reader.blocks(length):
                if pending is not None:
                    yield to_model(pending)
                pending = block
            if pending is None:
                raise ApolloError(f"{path}: holds no audio samples")
            yield to_model(pending, last=True)

    return chunks(), info.channels


def run(args: argparse.Namespace) -> int:
    import torch

    if args.chunk_ms <= 0:
        raise ApolloError("--chunk-ms must be positive")
    if not args.raw and (args.channels is not None or args.rate is not None):
        raise ApolloError("--channels and --rate describe raw input: add --raw")
    if args.raw and (args.channels is None or args.channels < 1 or args.rate is None):
        raise ApolloError("--raw needs --channels N (>= 1) and --rate HZ")
    if args.threads < 1:
        raise ApolloError("--threads must be >= 1")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _stream(args)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests, notebooks) keep their setting


def _stream(args: argparse.Namespace) -> int:
    from apollo_restore.audio import AtomicAudioWriter
    from apollo_restore.decode import check_input_file
    from apollo_restore.evaluate.stream_timing import run_stream
    from apollo_restore.files import same_file
    from apollo_restore.inference import pick_device
    from apollo_restore.streaming import StreamingRestorer

    output = args.output if args.output is not None else (STDIO if args.raw else None)
    if output is None:
        raise ApolloError("give -o OUTPUT.wav/.flac, or -o - for raw f32le on stdout")
    if not args.raw and args.input != STDIO:
        check_input_file(Path(args.input))  # a symlink loop or a FIFO gets its own message
    if output != STDIO and args.input != STDIO and same_file(output, args.input):
        raise ApolloError(f"{args.input}: output would overwrite the input")
    if args.compile:  # the complex STFT ops stay eager; inductor says so once per graph
        warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex")
    device = pick_device(args.device)
    model, gate = _model(args, device)
    engine = StreamingRestorer(model, device, gain=10 ** (args.gain_db / 20), compile=args.compile, gate=gate,
                               engine=args.engine)
    rate = engine.sample_rate
    with contextlib.ExitStack() as stack:
        if args.raw:
            if args.rate != rate:
                raise ApolloError(f"raw input at {args.rate} Hz, but the model runs at {rate} Hz: resample it on "
                                  f"the way in (ffmpeg ... -ar {rate} -f f32le -)")
            channels = args.channels
            source = sys.stdin.buffer if args.input == STDIO else stack.enter_context(_open(Path(args.input)))
            chunks = _raw_chunks(source, channels, max(1, round(args.chunk_ms * rate / 1000)))
        else:
            if args.input == STDIO:
                raise ApolloError("reading stdin needs --raw (with --channels and --rate)")
            chunks, channels = _file_chunks(Path(args.input), rate, args.chunk_ms)
        _warm_up(engine, channels)
        if output == STDIO:
            sink = _stdout_sink()
        else:
            sink = stack.enter_context(AtomicAudioWriter(output, rate, channels, args.subtype)).write
        stats = run_stream(engine, chunks, sink, args.chunk_ms)
        if stats.samples == 0:
            raise ApolloError(f"{args.input}: no audio samples")
    print(stats.summary(), file=sys.stderr)
    return 0


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as error:
        raise ApolloError(f"{path}: cannot read ({error.strerror})") from None


def _warm_up(engine: StreamingRestorer, channels: int) -> None:
    """Frames of silence, one per call like a 10 ms stream, so that one-time set-up costs (and compilation)
    do not count as stream compute; then reset."""
    for _ in range(4):
        engine.process(np.zeros((channels, engine.framing.hop), np.float32))
    engine.reset()


def _stdout_sink() -> Callable[[np.ndarray], None]:
    """Write blocks to stdout as interleaved f32le, flushed at once (a pipe reader gets them without delay)."""
    out = sys.stdout.buffer

    def write(block: np.ndarray) -> None:
        try:
            out.write(np.ascontiguousarray(block.T, dtype="<f4").tobytes())
            out.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            raise ApolloError("the reader of stdout went away") from None

    return write
