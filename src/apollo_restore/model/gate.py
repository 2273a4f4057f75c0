"""The input gate of models with ``fill_below_db``: where the codec cut the spectrum, and which bins to keep.

A codec low-passes every frame at the same frequency but also drops bands below it in many frames, so the
cut-off is estimated over many frames: the highest bin that comes within ``below_db`` dB of its frame's loudest
bin in at least ``MIN_SHARE`` of the sounding frames. Measured on MP3 24-128 kbit/s clips it errs only low
(never more than 0.3 kHz above the encoder's low-pass); an estimate that is too low only lets the model write a
little more. Silent input gives the top bin: nothing to fill.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: share of the sounding frames in which a bin must be present to count as inside the pass band
MIN_SHARE = 0.1
#: frames whose loudest bin has less power than this are silence and do not count
SOUNDING_POWER = 1e-10


def presence(spec: Tensor, below_db: float) -> tuple[Tensor, Tensor]:
    """complex ``[batch, frames, bins]`` -> (present ``[batch, frames, bins]``, sounding ``[batch, frames]``)."""
    power = spec.real.square() + spec.imag.square()
    peak = power.amax(dim=-1)
    sounding = peak > SOUNDING_POWER
    present = (power > peak.unsqueeze(-1) * 10 ** (-below_db / 10)) & sounding.unsqueeze(-1)
    return present, sounding


def top_bin(present_frames: Tensor, sounding_frames: Tensor) -> Tensor:
    """Counts ``[..., bins]`` and ``[...]`` -> the cut-off bin ``[...]`` (long)."""
    share = present_frames / sounding_frames.clamp_min(1).unsqueeze(-1)
    bins = torch.arange(share.shape[-1], device=share.device)
    top = torch.where(share >= MIN_SHARE, bins, -1).amax(dim=-1)
    return torch.where(top < 0, share.shape[-1] - 1, top)


def pass_band_top(spec: Tensor, below_db: float) -> Tensor:
    """The cut-off bin of each example over all its frames: complex ``[batch, frames, bins]`` -> long ``[batch]``."""
    present, sounding = presence(spec, below_db)
    return top_bin(present.sum(dim=1), sounding.sum(dim=1))


def fill_gate(num_bins: int, cutoff: Tensor) -> Tensor:
    """Which input bins to keep: cut-off bins ``[batch]`` or ``[batch, frames]`` -> ``[batch, 1 or frames, bins]``.

    1 up to the cut-off bin, 0 from two bins above it (0.5 in between).
    """
    bins = torch.arange(num_bins, device=cutoff.device)
    keep = ((cutoff.unsqueeze(-1) + 2 - bins) / 2).clamp(0.0, 1.0)
    return keep.unsqueeze(1) if cutoff.dim() == 1 else keep


class PassBandTracker:
    """Cut-off estimate over a signal fed in order (the blocks of a file, the chunks of a stream).

    All channels count together (they went through one encoder). ``update(spec [channels, frames, bins])``
    adds frames; ``cutoff()`` is the estimate so far (long ``[1]``); ``running(spec)`` adds frames and returns
    the estimate after each of them (``[1, frames]``), for causal use. ``state`` / ``load(state)``: one tensor.
    """

    def __init__(self, below_db: float, num_bins: int, device: torch.device | str = "cpu"):
        self.below_db = below_db
        self.state = torch.zeros(num_bins + 1, dtype=torch.float64, device=device)  # present counts, then frames

    def load(self, state: Tensor) -> None:
        if state.shape != self.state.shape:
            raise ValueError(f"pass-band state of shape {tuple(state.shape)}, expected {tuple(self.state.shape)}")
        self.state = state.to(self.state)

    def update(self, spec: Tensor) -> None:
        present, sounding = presence(spec, self.below_db)
        self.state[:-1] += present.sum(dim=(0, 1))
        self.state[-1] += sounding.sum()

    def cutoff(self) -> Tensor:
        return top_bin(self.state[:-1], self.state[-1]).reshape(1)

    def running(self, spec: Tensor) -> Tensor:
        present, sounding = presence(spec, self.below_db)
        counts = present.sum(dim=0).cumsum(dim=0) + self.state[:-1]  # [frames, bins]
        frames = sounding.sum(dim=0).cumsum(dim=0) + self.state[-1]
        self.state[:-1], self.state[-1] = counts[-1], frames[-1]
        return top_bin(counts, frames).unsqueeze(0)
