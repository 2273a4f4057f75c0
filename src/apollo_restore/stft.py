"""The one STFT framing of the package: every short-time spectrum (model, losses, discriminator, metrics, plots,
streams) is cut and put back together here, and every ``torch.stft`` / ``torch.istft`` call is in this module.

A :class:`Framing` is a periodic Hann window of ``n_fft`` samples moved by ``hop``, with *centred* frames: frame
``t`` is centred on sample ``t * hop`` and reads samples ``[t * hop - n_fft // 2, t * hop + n_fft // 2)``, the
signal extended by ``n_fft // 2`` samples on both sides (``pad_mode``: ``reflect`` mirrors the signal, as the
paper's model and losses do; ``constant`` adds zeros, so nothing before a sample depends on what follows it,
as causal models, streams and metrics need). A signal of ``L`` samples has ``1 + L // hop`` frames. Spectra are
complex ``[..., frames, bins]`` with ``bins = n_fft // 2 + 1``, not normalised; the inverse overlap-adds the
windowed frames and divides by the summed squared window (``torch.istft``).

Streams (`apollo_restore.streaming`) frame their input as it arrives with :meth:`Framing.analyse` and put the
restored frames back with an :class:`OverlapAdd`, which hands out each output sample once no later frame can
touch it; together they equal :meth:`Framing.stft` / :meth:`Framing.istft` of the whole signal with zero
padding, to float rounding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PadMode = Literal["reflect", "constant"]


@functools.lru_cache(maxsize=64)
def hann_window(n_fft: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """The periodic Hann window of ``n_fft`` samples on ``device`` (cached: do not modify it).

    Made outside inference mode, so that a window first asked for under ``torch.inference_mode`` can still be
    saved for backward by a later training step."""
    with torch.inference_mode(False):
        return torch.hann_window(n_fft, device=device, dtype=dtype)


@dataclass(frozen=True)
class Framing:
    """Centred periodic-Hann frames of ``n_fft`` samples every ``hop`` (see the module docstring)."""

    n_fft: int
    hop: int
    pad_mode: PadMode = "reflect"

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def pad(self) -> int:
        """Samples each frame reaches before its centre (and the padding at both ends)."""
        return self.n_fft // 2

    def window(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        return hann_window(self.n_fft, torch.device(device), dtype)

    # -- where frames are ------------------------------------------------------------------------------------

    def num_frames(self, length: int) -> int:
        """Frames of a ``length``-sample signal: ``1 + length // hop``."""
        return 1 + length // self.hop

    def frame_start(self, frame: int) -> int:
        """First sample frame ``frame`` reads (negative: the padding before the signal)."""
        return frame * self.hop - self.pad

    def frame_centres(self, count: int, start: int = 0, device: torch.device | str = "cpu") -> Tensor:
        """Sample positions ``[count]`` of the centres of the frames of a signal that begins at sample ``start``."""
        return start + self.hop * torch.arange(count, device=device)

    def padded_length(self, length: int) -> int:
        """Samples an offline pass runs on for a ``length``-sample input (zeros appended, cut off afterwards).

        At least half a window plus one (reflect padding needs it), rounded up so that the last frame reaching
        sample ``length - 1`` exists: every output sample then gets all its overlapping frames. Without this, the
        last ``length % hop`` samples would see one window edge only and be divided by a near-zero envelope.
        """
        return -(-max(length, self.pad + 1) // self.hop) * self.hop + self.n_fft - 2 * self.hop

    # -- whole signals ---------------------------------------------------------------------------------------

    def stft(self, audio: Tensor) -> Tensor:
        """``[..., samples]`` -> complex ``[..., frames, bins]``, in float32 (float64 input stays float64) and
        outside autocast."""
        audio = audio if audio.dtype == torch.float64 else audio.float()
        flat = audio.reshape(-1, audio.shape[-1])
        with torch.autocast(audio.device.type, enabled=False):
            spec = torch.stft(flat, self.n_fft, self.hop, window=self.window(audio.device, audio.dtype),
                              center=True, pad_mode=self.pad_mode, return_complex=True)
        return spec.reshape(*audio.shape[:-1], *spec.shape[-2:]).transpose(-1, -2)

    def istft(self, spec: Tensor, length: int) -> Tensor:
        """complex ``[..., frames, bins]`` -> ``[..., length]``."""
        flat = spec.reshape(-1, *spec.shape[-2:]).transpose(1, 2)
        dtype = torch.float64 if spec.dtype == torch.complex128 else torch.float32
        with torch.autocast(spec.device.type, enabled=False):
            audio = torch.istft(flat, self.n_fft, self.hop, window=self.window(spec.device, dtype), center=True,
                                length=length)
        return audio.reshape(*spec.shape[:-2], length)

    # -- streams ---------------------------------------------------------------------------------------------

    def analyse(self, buffer: Tensor, count: int) -> Tensor:
        """The first ``count`` frames of ``buffer [channels, n]`` that starts at a frame's first sample (``n >=
        (count - 1) * hop + n_fft``): complex ``[channels, count, bins]``, as in :meth:`stft`."""
        frames = buffer[:, : (count - 1) * self.hop + self.n_fft].unfold(1, self.n_fft, self.hop)
        return torch.fft.rfft(frames * self.window(buffer.device), dim=-1)


class OverlapAdd:
    """The inverse STFT of a stream: frames go in as they are restored, samples come out once final.

    ``add(spec [channels, count, bins], first)`` overlap-adds frames ``first, ..., first + count - 1``;
    ``take(final)`` returns samples ``[emitted, final)`` ``[channels, m]`` (signal sums divided by the summed
    squared window, as ``torch.istft``) and forgets them. Samples before 0 (the padding) are dropped. The state
    is ``sums [channels, n]``, ``envelope [n]`` (from sample ``emitted`` on) and ``emitted``.
    """

    def __init__(self, framing: Framing, channels: int, device: torch.device | str = "cpu"):
        self.framing = framing
        self.sums = torch.zeros(channels, 0, device=device)
        self.envelope = torch.zeros(0, device=device)
        self.emitted = 0

    def add(self, spec: Tensor, first: int) -> None:
        f, count = self.framing, spec.shape[1]
        window = f.window(spec.device)
        signal = torch.fft.irfft(spec, n=f.n_fft, dim=-1) * window  # [channels, count, n_fft]
        if count == 1:  # a stream's usual call: nothing overlaps within it
            added, envelope = signal[:, 0], window.square()
        else:
            span = (count - 1) * f.hop + f.n_fft
            added = F.fold(signal.transpose(1, 2), (1, span), (1, f.n_fft), stride=(1, f.hop))[:, 0, 0]
            weight = window.square().expand(1, count, -1).transpose(1, 2)
            envelope = F.fold(weight, (1, span), (1, f.n_fft), stride=(1, f.hop))[0, 0, 0]
        offset = f.frame_start(first) - self.emitted  # where the first frame lands in the buffers
        if offset < 0:  # the first frames reach back before sample 0: the offline pass drops those samples
            added, envelope, offset = added[:, -offset:], envelope[-offset:], 0
        size = offset + added.shape[-1]
        self.sums = _add_at(_grow(self.sums, size), added, offset)
        self.envelope = _add_at(_grow(self.envelope, size), envelope, offset)

    def take(self, final: int) -> Tensor:
        ready = max(0, final - self.emitted)
        out = self.sums[:, :ready] / self.envelope[:ready]
        self.sums, self.envelope = self.sums[:, ready:], self.envelope[ready:]
        self.emitted += ready
        return out


def _grow(buffer: Tensor, size: int) -> Tensor:
    """Zero-extend ``buffer [..., n]`` to at least ``size`` along the last axis."""
    return F.pad(buffer, (0, max(0, size - buffer.shape[-1])))


def _add_at(buffer: Tensor, values: Tensor, offset: int) -> Tensor:
    buffer[..., offset : offset + values.shape[-1]] += values
    return buffer


# -- numpy front end for metrics and plots --------------------------------------------------------------------


def power_spectrogram(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT|^2 of ``[..., samples]`` (zero-padded centred frames) -> float64 ``[..., frames, n_fft // 2 + 1]``,
    scaled so that a full-scale sine peaks at 1 (0 dBFS)."""
    framing = Framing(n_fft, hop, "constant")
    spec = framing.stft(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float64)))
    spec = spec / (float(framing.window(dtype=torch.float64).sum()) / 2)
    return (spec.real.square() + spec.imag.square()).numpy()


def bin_frequencies(sample_rate: int, n_fft: int) -> np.ndarray:
    """Centre frequency in Hz of each of the ``n_fft // 2 + 1`` bins."""
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
