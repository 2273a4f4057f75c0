"""The input gate: a small spectral rule, outside the generator, that decides where a model may write.

The generator (`model.Apollo`) restores the whole spectrum. A :class:`Gate` then combines the input spectrum
``X`` and the generator's ``Y`` into the output, by rules that each can be switched off (:class:`GateConfig`)
and are measured one by one against their absence on real music (docs/training.md). Inference
(`inference.Restorer`), streaming (`streaming.StreamingRestorer`) and training (`train.gan`) compose it; a
checkpoint's ``config.json`` carries its ``gate`` section beside ``model``. Checkpoints made before the gate
left the generator (``model.fill_below_db``) load with every rule on, as they were trained.

Where the codec cut the spectrum. A codec low-passes every frame at the same frequency but also drops bands
below it in many frames, so the cut-off is estimated over many frames: the highest bin that comes within
``below_db`` dB of its frame's loudest bin in at least ``MIN_SHARE`` of the sounding frames. Measured on MP3
24-128 kbit/s clips it errs only low (never more than 0.3 kHz above the encoder's low-pass).

Whether there is a cut at all (``require_cut``). A codec's cut lies above a pass band full of music: at least
``MIN_CUT_HZ`` up, with at least ``MIN_PASS_BAND_SHARE`` of the bins below it present in a typical sounding
frame, so DC, a pure tone or a few partials (no codec cut anywhere) pass through untouched. Silence writes
nothing either. With the rule, the output is ``X`` wherever no cut is found.

How a cut must look (``require_cliff``, with ``require_cut``). A codec's cut is a cliff: the long-term
spectrum drops by ``CLIFF_DB`` or more from just below that bin to just above it. A codec's cut is also
*sharp*: ``DEEP_DB`` dB further down (80 dB under the frame peak for ``below_db`` 60), the loud frames'
spectrum ends within a few bins of the cut-off too, because above it the encoder left nothing; a source that
rolls off by itself still has content there. The model writes in proportion to how well a cut passes both
tests. These were tuned on band-limited renders; on real MP3s they hold back part of the band (measured on
real music in docs/training.md): the bundled ``default`` runs without them, ``causal`` (which without them falls
under the MP3 at 128 kbit/s) with them.

``keep_pass_band``: bins below the cut-off pass through from the input unchanged, holes included (the model
writes only above the cut-off). ``fill_holes`` (with ``keep_pass_band``): except the holes, the bins of a frame
that the codec left more than ``below_db`` under that frame's loudest bin: those take the model's output, so
the bands MP3 drops frame by frame get filled while everything the codec kept passes through.
``level_cap``: what is written above the cut-off is no louder, per frame,
than the pass band's top falling ``CAP_TILT_DB_PER_OCTAVE`` (music's spectrum falls with frequency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from apollo_restore.errors import ApolloError
from apollo_restore.model.config import ApolloConfig

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
#: a codec's cut lies at least this high, above a pass band of which at least this share of the bins is present
#: in a typical sounding frame (the mean over pass-band bins of their presence share); below either: no cut
MIN_CUT_HZ = 2000.0
MIN_PASS_BAND_SHARE = 0.25


@dataclass(frozen=True)
class GateConfig:
    """The gate's rules (see the module docstring); the defaults are what the models trained with the gate inside
    the generator (``fill_below_db``) did, every rule on."""

    below_db: float = 60.0
    require_cut: bool = True
    require_cliff: bool = True
    keep_pass_band: bool = True
    fill_holes: bool = False
    level_cap: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.below_db, (int, float)) or not 5 < self.below_db <= 200:
            raise ApolloError(f"gate below_db must be a number of dB in (5, 200], got {self.below_db!r}")
        for name in ("require_cut", "require_cliff", "keep_pass_band", "fill_holes", "level_cap"):
            if not isinstance(getattr(self, name), bool):
                raise ApolloError(f"gate {name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> GateConfig:
        """From a mapping; unknown keys or a non-mapping are one-line errors."""
        if not isinstance(data, dict):
            raise ApolloError(f"gate config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ApolloError(f"unknown gate config key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**data)


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


def codec_cut(present: Tensor, sounding: Tensor, power: Tensor, deep: Tensor, amplitude: Tensor,
              min_cut_bin: int = 0, cliff: bool = True) -> tuple[Tensor, Tensor]:
    """Totals over frames of `_frame_stats` (``[..., bins]`` or ``[...]``) -> (cut-off bin ``[...]`` long, how
    much the model may write ``[...]`` in [0, 1]: 1 for a sharp cliff above a full pass band, 0 for a sparse
    spectrum, a cut below ``min_cut_bin`` or silence, and with ``cliff`` also 0 for a fade or a roll-off;
    without ``cliff`` 1 for any cut above a full pass band)."""
    bins = present.shape[-1]
    share = present / sounding.clamp_min(1).unsqueeze(-1)
    top = _top_bin(share)
    spread = _top_bin(deep / amplitude.clamp_min(1e-30).unsqueeze(-1)) - top
    sharp = ((SPREAD_BINS + 4 - spread) / 4).clamp(0.0, 1.0)
    found = top >= 0
    top = torch.where(found, top, bins - 1)
    occupancy = _window_mean(share.double(), torch.zeros_like(top), top + 1)  # of the pass band's bins
    # float64: the windows are differences of a cumulative sum over a spectrum that spans 100+ dB
    dtype, power = power.dtype, power.double()
    below = _window_mean(power, top - CLIFF_BINS + 1, top + 1)
    above = _window_mean(power, top + CLIFF_GAP, top + CLIFF_GAP + CLIFF_BINS)
    drop_db = 10 * torch.log10((below + 1e-30) / (above + 1e-30))
    weight = ((drop_db - CLIFF_DB) / 4 + 0.5).clamp(0.0, 1.0) * sharp if cliff else torch.ones_like(drop_db)
    is_cut = found & (top + CLIFF_GAP < bins) & (top >= min_cut_bin) & (occupancy >= MIN_PASS_BAND_SHARE)
    weight = torch.where(is_cut, weight, torch.zeros_like(weight))
    return top, weight.to(dtype)


def gated(spec: Tensor, out: Tensor, cutoff: Tensor, weight: Tensor, config: GateConfig) -> Tensor:
    """The output spectrum from the input ``spec`` and the generator's ``out`` (complex ``[batch, frames, bins]``)
    by the rules of ``config``. ``cutoff`` / ``weight``: ``[batch]`` (one per example) or ``[batch, frames]``
    (one per frame, for streams); without ``require_cut`` the weight is taken as 1."""
    per_frame = (lambda t: t.unsqueeze(-1)) if cutoff.dim() == 2 else (lambda t: t.reshape(-1, 1, 1))
    top = per_frame(cutoff)
    write = per_frame(weight) if config.require_cut else 1.0
    correction = out - spec
    bins = torch.arange(spec.shape[-1], device=spec.device)
    power = spec.real.square() + spec.imag.square()
    if config.level_cap:
        edge = ((bins > top - EDGE_BINS) & (bins <= top)).to(power.dtype)
        edge_level = ((power * edge).sum(-1, keepdim=True) / edge.sum(-1, keepdim=True).clamp_min(1)).sqrt()
        octaves = torch.log2((bins + 1) / (top + 1).to(power.dtype)).clamp_min(0)  # distance above the cut-off
        cap = edge_level * 10 ** (-CAP_TILT_DB_PER_OCTAVE * octaves / 20)
        scale = (cap / correction.abs().clamp_min(1e-12)).clamp(max=1.0)  # finite everywhere: finite gradients
        correction = correction * torch.where(bins > top, scale, 1.0)
    if config.keep_pass_band:  # fading in over two bins above the cut-off
        writable = ((bins - top) / 2).clamp(0.0, 1.0)
        if config.fill_holes:
            hole = power < power.amax(dim=-1, keepdim=True) * 10 ** (-config.below_db / 10)
            writable = torch.maximum(writable, hole.to(writable.dtype))
        correction = correction * writable
    return spec + write * correction


class PassBandTracker:
    """Cut estimate over a signal fed in order (the blocks of a file, the chunks of a stream).

    All channels count together (they went through one encoder). ``update(spec [channels, frames, bins])``
    adds frames; ``cut()`` is the estimate so far (cut-off ``[1]``, weight ``[1]``); ``running(spec)`` adds
    frames and returns the estimate after each of them (``[1, frames]`` each), for causal use. ``state`` /
    ``load(state)``: one tensor (the totals of `_frame_stats`).
    """

    def __init__(self, below_db: float, num_bins: int, min_cut_bin: int = 0, device: torch.device | str = "cpu",
                 cliff: bool = True):
        self.below_db = below_db
        self.min_cut_bin = min_cut_bin
        self.cliff = cliff
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
        """Per-frame totals over channels: ``[frames, sum(widths)]`` (counts and float32 sums, as float64)."""
        stats = [stat if stat.dim() == 3 else stat.unsqueeze(-1) for stat in _frame_stats(spec, self.below_db)]
        return torch.cat(stats, dim=-1).sum(0).to(self.state)  # one reduction (counts are exact in float32)

    def update(self, spec: Tensor) -> None:
        self.state = self.state + self._frames(spec).sum(dim=0)

    def cut(self) -> tuple[Tensor, Tensor]:
        top, weight = codec_cut(*self._split(self.state), self.min_cut_bin, self.cliff)
        return top.reshape(1), weight.reshape(1).float()

    def running(self, spec: Tensor) -> tuple[Tensor, Tensor]:
        totals = self._frames(spec).cumsum(dim=0) + self.state
        self.state = totals[-1].clone()
        top, weight = codec_cut(*self._split(totals), self.min_cut_bin, self.cliff)
        return top.unsqueeze(0), weight.unsqueeze(0).float()


class Gate:
    """:class:`GateConfig` rules for the STFT layout of a model config.

    ``estimate(spec [examples * channels, frames, bins], channels)`` is the cut of each example, all its
    channels together (``[examples * channels]`` each, repeated per channel); ``tracker(device)`` follows a
    signal fed in order; ``__call__(spec, out, cut)`` is the output spectrum (see `gated`).
    """

    def __init__(self, config: GateConfig, model: ApolloConfig):
        self.config = config
        self.num_bins = model.num_bins
        self.min_cut_bin = round(MIN_CUT_HZ * model.n_fft / model.sample_rate)

    def estimate(self, spec: Tensor, channels: int = 1) -> tuple[Tensor, Tensor]:
        pooled = spec.reshape(spec.shape[0] // channels, channels * spec.shape[1], spec.shape[2])
        stats = (stat.sum(dim=1) for stat in _frame_stats(pooled, self.config.below_db))
        cut = codec_cut(*stats, self.min_cut_bin, self.config.require_cliff)
        return tuple(t.repeat_interleave(channels) for t in cut)

    def tracker(self, device: torch.device | str = "cpu") -> PassBandTracker:
        return PassBandTracker(self.config.below_db, self.num_bins, self.min_cut_bin, device,
                               self.config.require_cliff)

    def __call__(self, spec: Tensor, out: Tensor, cut: tuple[Tensor, Tensor]) -> Tensor:
        return gated(spec, out, *cut, self.config)

    def bind(self, cut: tuple[Tensor, Tensor] | None = None, channels: int = 1) -> Callable[[Tensor, Tensor], Tensor]:
        """As ``post`` of `Apollo.forward`: the gate with ``cut``, or with each example's own cut when None."""
        return lambda spec, out: self(spec, out, self.estimate(spec, channels) if cut is None else cut)
