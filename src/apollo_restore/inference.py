"""Restoration of arrays and files of any length: exact block processing, level handling, devices.

Long inputs run in blocks. Each block is extended by real signal on both sides (more than the model's
receptive field, starting on a multiple of the hop), the model runs on the extended segment, and only the
block's own samples are kept. Every kept sample then sees exactly the input a single full pass would give it,
so the output equals one full pass (to float rounding) while memory depends on the block size only. Nothing
is cross-faded.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from apollo_restore.audio import (
    AtomicAudioWriter,
    AudioReader,
    ResampleStream,
    as_channels_first,
    fit_length,
    open_audio,
    resample,
)
from apollo_restore.errors import ApolloError
from apollo_restore.files import temporary
from apollo_restore.gate import Gate
from apollo_restore.model import Apollo, ApolloConfig
from apollo_restore.precision import resolve_precision

#: bytes of the residual stream (``[channels, frames, bands, dim]`` floats) of one model pass: all channels of a
#: block go through the model together up to this, so memory stays bounded for any channel count (at 256x6 one
#: channel of a 10 s block is 91 MiB: channels one at a time; 256 MiB, two at a time, peaked 1,240 against 766 MiB
#: for a 10 s stereo block at the same speed, docs/evaluation.md)
PASS_BYTES = 128 << 20
#: the default block: as long as one channel's residual stream fits BLOCK_BYTES (12.3 s at 256x6), within
#: AUTO_BLOCK_SECONDS; long blocks keep the context each block re-reads small (2 x 0.57 s at 256x6: 9 % of a
#: 12.3 s block). 192 MiB (24.5 s blocks) peaked at 1,570 MiB for 60 s stereo at 256x6 (docs/evaluation.md)
BLOCK_BYTES = 96 << 20
AUTO_BLOCK_SECONDS = (10.0, 60.0)
#: frames of extra context beyond the receptive field (STFT window overlap and padding effects)
CONTEXT_MARGIN_FRAMES = 3
#: the level the model sees: inputs are scaled so that their peak is this (training clips peak near 1)
TARGET_PEAK = 1.0
#: inputs with a lower peak (-600 dBFS, far below any format's noise floor) are silence: a gain of
#: TARGET_PEAK / peak would overflow float32, so they are written as zeros
MIN_PEAK = 1e-30
#: input samples decoded per step into the temporary copy
DECODE_BLOCK = 1 << 18


def keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks instead of returning them to the OS after every large tensor.

    Without it, each layer's activations are mmap'ed and unmapped again and the kernel's page faults cost
    ~12 % of CPU inference time (measured at 256x6: sys time 4.0 s -> 0.3 s, 2.5 M -> 0.16 M page faults).
    A no-op off glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


def pick_device(name: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """``None``/``"auto"``: CUDA, else Apple MPS, else CPU. A named device that is absent is an error. ``cuda``
    without an index is the GPU of ``local_rank`` (this process's under torchrun; GPU 0 otherwise)."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return pick_device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ApolloError(f"unknown device {name!r} (use cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ApolloError(f"device {name!r} was asked for but no CUDA GPU is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ApolloError(f"device {name!r} was asked for but Apple MPS is not available")
    return device


@dataclass(frozen=True)
class Block:
    """Samples ``[keep_start, keep_stop)`` are kept from a model pass over ``[start, stop)``."""

    start: int
    keep_start: int
    keep_stop: int
    stop: int


def auto_block_seconds(config: ApolloConfig) -> float:
    """The default block length for a model: one channel's residual stream within BLOCK_BYTES."""
    frames = BLOCK_BYTES // (config.num_bands * config.feature_dim * 4)
    low, high = AUTO_BLOCK_SECONDS
    return min(high, max(low, frames * config.hop / config.sample_rate))


def plan_blocks(length: int, config: ApolloConfig, block_seconds: float) -> list[Block]:
    """Cut ``length`` samples into blocks with enough real context for an exact result."""
    hop = config.hop
    past, future = config.context_frames
    left = (past + CONTEXT_MARGIN_FRAMES) * hop
    right = (future + CONTEXT_MARGIN_FRAMES) * hop
    block = max(1, round(block_seconds * config.sample_rate / hop)) * hop
    return [
        Block(max(0, s - left), s, min(length, s + block), min(length, s + block + right))
        for s in range(0, length, block)
    ]


class Restorer:
    """Runs a model over arrays or files of any length (see module docstring)."""

    def __init__(self, model: Apollo, device: str | torch.device | None = None, block_seconds: float | None = None,
                 gate: Gate | None = None, precision: str = "fp32"):
        self.device = pick_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        if self.dtype != torch.float32:  # the caller's model stays as it is
            self.model = self.model.with_precision(self.dtype)
        self.config = model.config
        self.gate = gate
        if self.device.type == "cpu":
            keep_freed_memory()
        if block_seconds is None:
            block_seconds = auto_block_seconds(model.config)
        if not (isinstance(block_seconds, (int, float)) and math.isfinite(block_seconds) and block_seconds > 0):
            raise ApolloError(f"block_seconds must be a positive number of seconds, got {block_seconds!r}")
        self.block_seconds = block_seconds

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @torch.inference_mode()
    def _run(self, segment: np.ndarray, cut: tuple[torch.Tensor, torch.Tensor] | None) -> np.ndarray:
        """One model pass: ``[channels, n]`` -> ``[channels, n]`` (channels together, up to PASS_BYTES)."""
        x = torch.from_numpy(np.ascontiguousarray(segment)).to(self.device)
        post = None if self.gate is None else self.gate.bind(cut)
        c = self.config
        group = max(1, PASS_BYTES // ((x.shape[1] // c.hop + 2) * c.num_bands * c.feature_dim * 4))
        out = [self.model(part[None], post)[0] for part in x.split(group, dim=0)]
        return torch.cat(out, dim=0).float().cpu().numpy()

    @torch.inference_mode()
    def _cut(self, blocks: list[Block], read: Callable[[int, int], np.ndarray], gain: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The input's codec cut over the whole signal (with a gate): a first pass over the same STFT frames
        the blocks will see, each frame counted once, so blocks give what one full pass would."""
        framing = self.config.framing
        tracker = self.gate.tracker(self.device)
        for i, block in enumerate(blocks):
            x = torch.from_numpy(np.ascontiguousarray(read(block.start, block.stop) * gain)).to(self.device)
            n = x.shape[1]
            spec = framing.stft(torch.nn.functional.pad(x, (0, framing.padded_length(n) - n)))
            centres = framing.frame_centres(spec.shape[1], block.start, self.device)
            mine = (centres >= block.keep_start) & ((centres < block.keep_stop) | (i == len(blocks) - 1))
            tracker.update(spec[:, mine])
        return tracker.cut()

    def run_blocks(self, read: Callable[[int, int], np.ndarray], length: int, gain: float) -> Iterator[np.ndarray]:
        """Yield restored blocks in order; ``read(start, stop)`` returns input ``[channels, stop-start]``."""
        blocks = plan_blocks(length, self.config, self.block_seconds)
        cut = None if self.gate is None else self._cut(blocks, read, gain)
        for block in blocks:
            restored = self._run(read(block.start, block.stop) * gain, cut) / gain
            if not np.isfinite(restored).all():
                at = block.keep_start / self.sample_rate
                raise ApolloError(f"the model's output is not finite (NaN or infinity) from {at:.1f} s on; "
                                  "nothing was written (are the model's weights finite?)")
            yield restored[:, block.keep_start - block.start : block.keep_stop - block.start]

    def restore_array(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Restore ``[channels, samples]`` or ``[samples]`` at any rate; returns the same shape and rate."""
        audio, was_1d = as_channels_first(audio)
        if not np.isfinite(audio).all():
            raise ApolloError("audio contains NaN or infinite samples")
        x = resample(audio, sample_rate, self.sample_rate)
        peak = float(np.abs(x).max())
        if peak < MIN_PEAK:
            out = np.zeros_like(x)
        else:
            out = np.concatenate(list(self.run_blocks(lambda a, b: x[:, a:b], x.shape[1], TARGET_PEAK / peak)), 1)
        out = resample(out, self.sample_rate, sample_rate)
        out = fit_length(out, audio.shape[1])
        return out[0] if was_1d else out

    def restore_file(self, src: str | Path, dst: str | Path, subtype: str | None = None, keep_sr: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> FileResult:
        """Restore one file to ``dst`` (written atomically). ``progress(done, total)`` gets model-rate samples."""
        started = time.perf_counter()
        with open_audio(src) as reader, temporary(hint=f"{Path(src).name}.decoded") as tmp:
            info = reader.info
            source = DecodedCopy(tmp, info.channels)
            with source:
                length, peak, in_length = self._decode(reader, source)
                out_sr = info.sample_rate if keep_sr else self.sample_rate
                out_length = in_length if keep_sr else length
                back = ResampleStream(self.sample_rate, out_sr, info.channels)
                with AtomicAudioWriter(dst, out_sr, info.channels, subtype) as out:
                    blocks = (
                        self.run_blocks(source.read, length, TARGET_PEAK / peak) if peak >= MIN_PEAK
                        else (np.zeros((info.channels, b.keep_stop - b.keep_start), np.float32)
                              for b in plan_blocks(length, self.config, self.block_seconds))
                    )
                    written = done = 0
                    for block in blocks:
                        done += block.shape[1]
                        chunk = back(block, last=done >= length)
                        chunk = chunk[:, : max(0, out_length - written)]
                        out.write(chunk)
                        written += chunk.shape[1]
                        if progress:
                            progress(done, length)
                    if written < out_length:
                        out.write(np.zeros((info.channels, out_length - written), np.float32))
        return FileResult(Path(src), Path(dst), in_length / info.sample_rate, info.channels, info.sample_rate, out_sr,
                          time.perf_counter() - started, peak, out.clipped)

    def _decode(self, reader: AudioReader, copy: DecodedCopy) -> tuple[int, float, int]:
        """Decode ``reader`` once into ``copy`` at the model rate; returns (length, peak, input length)."""
        info = reader.info
        to_model = ResampleStream(info.sample_rate, self.sample_rate, info.channels)
        peak, in_length = 0.0, 0
        pending = None
        for block in reader.blocks(DECODE_BLOCK):
            if pending is not None:
                peak = max(peak, copy.write(to_model(pending)))
            pending = block
            in_length += block.shape[1]
        if pending is None:
            raise ApolloError(f"{info.path}: holds no audio samples")
        peak = max(peak, copy.write(to_model(pending, last=True)))
        if copy.length == 0:
            raise ApolloError(f"{info.path}: too short to restore")
        return copy.length, peak, in_length


class DecodedCopy:
    """The decoded input at the model rate as raw float32 in a temporary file, read back by position.

    The file is one of this program's temporaries in TMPDIR (`files.temporary`): removed on return, error,
    Ctrl-C or SIGTERM; one left by a killed process is removed by the next run once its pid is gone."""

    def __init__(self, path: Path, channels: int):
        self.path, self.channels, self.length = path, channels, 0
        try:
            self._file = path.open("w+b")
        except OSError as error:
            raise ApolloError(f"{path.parent}: cannot create the decoded copy of the input ({error.strerror}; "
                              "set TMPDIR to a writable folder)") from None

    def write(self, block: np.ndarray) -> float:
        """Append ``[channels, n]``; returns its peak."""
        if not block.shape[1]:
            return 0.0
        try:
            self._file.write(np.ascontiguousarray(block.T, dtype=np.float32).tobytes())
            self._file.flush()
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ApolloError(f"{self.path.parent}: disk full while writing the decoded copy of the input "
                                  f"({self.length * 4 * self.channels / 1e6:.1f} MB written; set TMPDIR to a "
                                  "folder with more space)") from None
            raise ApolloError(f"{self.path}: cannot write the decoded copy ({error.strerror})") from None
        self.length += block.shape[1]
        return float(np.abs(block).max())

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as ``[channels, stop - start]``."""
        self._file.seek(start * 4 * self.channels)
        data = np.frombuffer(self._file.read((stop - start) * 4 * self.channels), dtype=np.float32)
        return data.reshape(-1, self.channels).T

    def __enter__(self) -> DecodedCopy:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


@dataclass(frozen=True)
class FileResult:
    """What restoring one file did, for the per-file summary line."""

    src: Path
    dst: Path
    seconds: float
    channels: int
    in_rate: int
    out_rate: int
    elapsed: float
    peak: float
    clipped: int

    def summary(self) -> str:
        peak_db = 20 * math.log10(self.peak) if self.peak > 0 else float("-inf")
        text = (f"{self.src} -> {self.dst}: {self.seconds:.1f} s, {self.channels} ch, {self.in_rate} Hz -> "
                f"{self.out_rate} Hz, {self.elapsed:.1f} s (RTF {self.elapsed / max(self.seconds, 1e-9):.2f}), "
                f"input peak {peak_db:.1f} dBFS")
        if self.clipped:
            text += f", {self.clipped} samples clipped (use float32 output to keep them)"
        return text


def restore(audio: np.ndarray, sample_rate: int, model: Apollo | None = None, device: str | None = None,
            block_seconds: float = 10.0, gate: Gate | None = None) -> np.ndarray:
    """Restore ``audio`` (``[channels, samples]`` or ``[samples]``, any rate) with ``model`` and ``gate`` (default:
    the bundled default model with its gate, if it has one; see `checkpoint.load_checkpoint`).

    Returns float32 audio of the same shape and rate, at the input's original level.
    """
    if model is None:
        from apollo_restore.checkpoint import load_checkpoint

        model, gate = load_checkpoint()
    return Restorer(model, device, block_seconds, gate).restore_array(audio, sample_rate)
