"""The input gate of models with ``fill_below_db``: where the codec cut the spectrum, and what the model writes.

A codec low-passes every frame at the same frequency but also drops bands below it in many frames, so the
cut-off is estimated over many frames: the highest bin that comes within ``below_db`` dB of its frame's loudest
bin in at least ``MIN_SHARE`` of the sounding frames. Measured on MP3 24-128 kbit/s clips it errs only low
(never more than 0.3 kHz above the encoder's low-pass). A codec's cut is a cliff: the long-term spectrum drops
by ``CLIFF_DB`` or more from just below that bin to just above it. Where it only fades (band-limited source
material, which an MP3 encoder did not cut), the model writes nothing: on the validation set this separated
the clips with content above the MP3's low-pass from those without (no cut clip under 10.8 dB, 18 of 22
uncut ones under 10.4 dB). Silent input writes nothing either.

A codec's cut is also *sharp*: ``DEEP_DB`` dB further down (80 dB under the frame peak for ``below_db`` 60),
the loud frames' spectrum ends within a few bins of the cut-off too, because above it the encoder left
nothing. A source that rolls off by itself (a sampled instrument's band limit) still has content there, up to
the encoder's real low-pass far above, and the model writes nothing. On the 168 validation clips (MP3
24-128 kbit/s; `scripts/gate_report.py`) this keeps the gate open on 49 of the 100 clips whose reference goes
on above the cut-off (51 without it) and closes it on all but 7 of the 31 whose reference ends there (22
without it); on the 96 test clips: 59 of 67 open either way, 5 of 15 (11 without it).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: share of the sounding frames in which a bin must be present to count as inside the pass band
MIN_SHARE = 0.1
#: frames whose loudest bin has less power than this are silence and do not count
SOUNDING_POWER = 1e-10
#: long-term spectrum drop (dB) across the cut-off that marks a codec's cut; the gate opens over +-2 dB
CLIFF_DB = 10.0
#: bins (50 Hz each at 44.1 kHz) compared on either side of the cut-off, and the gap left above it
CLIFF_BINS, CLIFF_GAP = 20, 3
#: bins under the cut-off whose level caps the generated band, and how fast the cap falls above the cut-off
EDGE_BINS = 40
CAP_TILT_DB_PER_OCTAVE = 12.0
#: how much deeper than ``below_db`` the sharpness test looks, and how far (bins) above the cut-off the deep
#: edge may lie: the gate is fully open up to ``SPREAD_BINS``, closed from ``SPREAD_BINS + 4``
DEEP_DB = 20.0
SPREAD_BINS = 10


def _frame_stats(spec: Tensor, below_db: float) -> tuple[Tensor, ...]:
    """complex ``[batch, frames, bins]`` -> present ``[batch, frames, bins]``, sounding ``[batch, frames]``,
    power of the sounding frames ``[batch, frames, bins]``, presence ``DEEP_DB`` further down weighted by the
    frame's peak amplitude ``[batch, frames, bins]``, and that weight ``[batch, frames]``."""
    power = spec.real.square() + spec.imag.square()
    peak = power.amax(dim=-1)
    sounding = peak > SOUNDING_POWER
    present = (power > peak.unsqueeze(-1) * 10 ** (-below_db / 10)) & sounding.unsqueeze(-1)
    amplitude = peak.sqrt() * sounding
    deep = (power > peak.unsqueeze(-1) * 10 ** (-(below_db + DEEP_DB) / 10)) * amplitude.unsqueeze(-1)
    return present, sounding, power * sounding.unsqueeze(-1), deep, amplitude


def _top_bin(share: Tensor) -> Tensor:
    """Highest bin whose share (``[..., bins]``) reaches ``MIN_SHARE``, -1 if none: ``[...]``."""
    index = torch.arange(share.shape[-1], device=share.device)
    return torch.where(share >= MIN_SHARE, index, -1).amax(dim=-1)


def _window_mean(values: Tensor, start: Tensor, stop: Tensor) -> Tensor:
    """Mean of ``values [..., bins]`` over bins ``[start, stop)`` (``[...]`` each, clipped to the range)."""
    sums = torch.nn.functional.pad(values.cumsum(dim=-1), (1, 0))
    start, stop = start.clamp(0, values.shape[-1]), stop.clamp(0, values.shape[-1])
    total = sums.gather(-1, stop.unsqueeze(-1)) - sums.gather(-1, start.unsqueeze(-1))
    return total.squeeze(-1) / (stop - start).clamp_min(1)


def codec_cut(present: Tensor, sounding: Tensor, power: Tensor, deep: Tensor, amplitude: Tensor
              ) -> tuple[Tensor, Tensor]:
    """Totals over frames of `_frame_stats` (``[..., bins]`` or ``[...]``) -> (cut-off bin ``[...]`` long, how
    much the model may write ``[...]`` in [0, 1]: 1 for a sharp cliff, 0 for a fade, a roll-off or silence)."""
    bins = present.shape[-1]
    top = _top_bin(present / sounding.clamp_min(1).unsqueeze(-1))
    spread = _top_bin(deep / amplitude.clamp_min(1e-30).unsqueeze(-1)) - top
    sharp = ((SPREAD_BINS + 4 - spread) / 4).clamp(0.0, 1.0)
    found = top >= 0
    top = torch.where(found, top, bins - 1)
    # float64: the windows are differences of a cumulative sum over a spectrum that spans 100+ dB
    dtype, power = power.dtype, power.double()
    below = _window_mean(power, top - CLIFF_BINS + 1, top + 1)
    above = _window_mean(power, top + CLIFF_GAP, top + CLIFF_GAP + CLIFF_BINS)
    drop_db = 10 * torch.log10((below + 1e-30) / (above + 1e-30))
    weight = ((drop_db - CLIFF_DB) / 4 + 0.5).clamp(0.0, 1.0) * sharp
    weight = torch.where(found & (top + CLIFF_GAP < bins), weight, torch.zeros_like(weight))
    return top, weight.to(dtype)


def estimate_cut(spec: Tensor, below_db: float) -> tuple[Tensor, Tensor]:
    """Cut-off bin and cliff weight of each example over all its frames: ``[batch, frames, bins]`` -> ``[batch]``."""
    return codec_cut(*(stat.sum(dim=1) for stat in _frame_stats(spec, below_db)))


def apply_gate(spec: Tensor, out: Tensor, cutoff: Tensor, weight: Tensor) -> Tensor:
    """The input plus the model's correction ``out - spec`` above the cut-off only (fading in over two bins),
    scaled by the cliff weight and, per frame, no louder than the pass band's top falling by
    ``CAP_TILT_DB_PER_OCTAVE`` (music's spectrum falls with frequency); complex
    ``[batch, frames, bins]``. The input is never taken away. ``cutoff`` / ``weight``: ``[batch]`` (one per
    example) or ``[batch, frames]`` (one per frame, for streams)."""
    per_frame = (lambda t: t.unsqueeze(-1)) if cutoff.dim() == 2 else (lambda t: t.reshape(-1, 1, 1))
    top, write = per_frame(cutoff), per_frame(weight)
    bins = torch.arange(spec.shape[-1], device=spec.device)
    power = spec.real.square() + spec.imag.square()
    edge = ((bins > top - EDGE_BINS) & (bins <= top)).to(power.dtype)
    edge_level = ((power * edge).sum(-1, keepdim=True) / edge.sum(-1, keepdim=True).clamp_min(1)).sqrt()
    octaves = torch.log2((bins + 1) / (top + 1).to(power.dtype)).clamp_min(0)  # distance above the cut-off
    cap = edge_level * 10 ** (-CAP_TILT_DB_PER_OCTAVE * octaves / 20)
    correction = out - spec
    capped = correction * (cap / correction.abs().clamp_min(1e-12)).clamp(max=1.0)
    return spec + write * ((bins - top) / 2).clamp(0.0, 1.0) * capped


class PassBandTracker:
    """Cut estimate over a signal fed in order (the blocks of a file, the chunks of a stream).

    All channels count together (they went through one encoder). ``update(spec [channels, frames, bins])``
    adds frames; ``cut()`` is the estimate so far (cut-off ``[1]``, weight ``[1]``); ``running(spec)`` adds
    frames and returns the estimate after each of them (``[1, frames]`` each), for causal use. ``state`` /
    ``load(state)``: one tensor (the totals of `_frame_stats`).
    """

    def __init__(self, below_db: float, num_bins: int, device: torch.device | str = "cpu"):
        self.below_db = below_db
        #: width of each `_frame_stats` total in ``state``: present, sounding, power, deep, amplitude
        self.widths = [num_bins, 1, num_bins, num_bins, 1]
        self.state = torch.zeros(sum(self.widths), dtype=torch.float64, device=device)

    def load(self, state: Tensor) -> None:
        if state.shape != self.state.shape:
            raise ValueError(f"pass-band state of shape {tuple(state.shape)}, expected {tuple(self.state.shape)}")
        self.state = state.to(self.state)

    def _split(self, totals: Tensor) -> tuple[Tensor, ...]:
        parts = totals.split(self.widths, dim=-1)
        return tuple(part.squeeze(-1) if width == 1 else part for part, width in zip(parts, self.widths, strict=True))

    def _frames(self, spec: Tensor) -> Tensor:
        """Per-frame totals over channels: ``[frames, sum(widths)]``."""
        stats = [stat.sum(0).to(self.state) for stat in _frame_stats(spec, self.below_db)]
        return torch.cat([stat if stat.dim() == 2 else stat.unsqueeze(-1) for stat in stats], dim=-1)

    def update(self, spec: Tensor) -> None:
        self.state = self.state + self._frames(spec).sum(dim=0)

    def cut(self) -> tuple[Tensor, Tensor]:
        top, weight = codec_cut(*self._split(self.state))
        return top.reshape(1), weight.reshape(1).float()

    def running(self, spec: Tensor) -> tuple[Tensor, Tensor]:
        totals = self._frames(spec).cumsum(dim=0) + self.state
        self.state = totals[-1].clone()
        top, weight = codec_cut(*self._split(totals))
        return top.unsqueeze(0), weight.unsqueeze(0).float()
