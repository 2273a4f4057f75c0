"""Band split (gain-shape features + per-band bottleneck) and band reconstruction (per-band GLU head).

Bands are grouped into *runs* of consecutive bands with equal width (the default 44.1 kHz layout has two runs:
79 bands of 5 bins, 1 band of 47). Each run is one reshape and one batched matmul, so the work is vectorised
over bands; the loop is over runs only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apollo_restore.model.layers import BandwiseLinear, RMSNorm, frame_chunk, spans

GAIN_EPS = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class BandRun:
    """``bands`` consecutive bands of ``width`` bins starting at bin ``start`` (and band index ``first_band``)."""

    start: int
    first_band: int
    bands: int
    width: int

    @property
    def stop(self) -> int:
        return self.start + self.bands * self.width


def band_runs(widths: tuple[int, ...]) -> list[BandRun]:
    """Group band widths into runs of equal consecutive widths."""
    runs, start, band = [], 0, 0
    for width, group in itertools.groupby(widths):
        count = len(list(group))
        runs.append(BandRun(start, band, count, width))
        start += count * width
        band += count
    return runs


def gain_shape(real: Tensor, imag: Tensor, run: BandRun) -> Tensor:
    """Gain-shape features of one run: ``real, imag [batch, frames, bins]`` -> ``[batch, frames, bands, 2w+1]``.

    Per band and frame: ``[Re/g, Im/g, log g]`` with ``g = sqrt(sum |X|^2 + eps)`` (finite on silence).
    """
    real, imag = (part[..., run.start : run.stop].unflatten(-1, (run.bands, run.width)) for part in (real, imag))
    gain = torch.sqrt((real.square() + imag.square()).sum(-1, keepdim=True) + GAIN_EPS)
    return torch.cat([real / gain, imag / gain, gain.log()], dim=-1)


class BandSplit(nn.Module):
    """Spectrum -> band embeddings: ``real, imag [batch, frames, bins]`` -> ``[batch, frames, bands, dim]``.

    Features are computed in float32 and enter the network in its weights' dtype.
    """

    def __init__(self, widths: tuple[int, ...], dim: int):
        super().__init__()
        self.runs = band_runs(widths)
        self.num_bands, self.dim = len(widths), dim
        self.chunk: int | None = None  # frames per inference chunk; None: `frame_chunk` (4N per band)
        self.norms = nn.ModuleList(RMSNorm(r.bands, 2 * r.width + 1) for r in self.runs)
        self.projections = nn.ModuleList(BandwiseLinear(r.bands, 2 * r.width + 1, dim) for r in self.runs)

    def forward(self, real: Tensor, imag: Tensor) -> Tensor:
        dtype = self.projections[0].weight.dtype
        chunks = spans(real.shape[1], self.chunk or frame_chunk(4 * self.num_bands * self.dim, real.device, dtype))
        if torch.is_grad_enabled() or len(chunks) == 1:
            return self._embed(real, imag)
        # without gradients: chunks of frames written into one output (no per-run parts and copy of them all)
        out = real.new_empty(*real.shape[:2], self.num_bands, self.dim, dtype=dtype)
        for start, stop in chunks:
            out[:, start:stop] = self._embed(real[:, start:stop], imag[:, start:stop])
        return out

    def _embed(self, real: Tensor, imag: Tensor) -> Tensor:
        parts = [
            proj(norm(gain_shape(real, imag, run).to(proj.weight.dtype)))
            for run, norm, proj in zip(self.runs, self.norms, self.projections, strict=True)
        ]
        return torch.cat(parts, dim=2)


class BandMerge(nn.Module):
    """Band embeddings -> spectrum: ``[batch, frames, bands, dim]`` -> float32 ``real, imag [batch, frames, bins]``.

    Per band: RMSNorm -> linear to 4w -> GLU -> (real, imag) of the band's w bins. Direct regression, no mask.
    """

    def __init__(self, widths: tuple[int, ...], dim: int):
        super().__init__()
        self.runs = band_runs(widths)
        self.chunk: int | None = None  # frames per inference chunk; None: `frame_chunk` of the input (4N per band)
        self.norms = nn.ModuleList(RMSNorm(r.bands, dim) for r in self.runs)
        self.projections = nn.ModuleList(BandwiseLinear(r.bands, dim, 4 * r.width) for r in self.runs)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        chunks = spans(x.shape[1], self.chunk or frame_chunk(4 * x.shape[-2] * x.shape[-1], x.device, x.dtype))
        if torch.is_grad_enabled() or len(chunks) == 1:
            return self._spectrum(x)
        # without gradients: chunks of frames, so the norm's full-size temporaries are never all held at once
        pieces = [self._spectrum(x[:, start:stop]) for start, stop in chunks]
        return torch.cat([real for real, _ in pieces], dim=1), torch.cat([imag for _, imag in pieces], dim=1)

    def _spectrum(self, x: Tensor) -> tuple[Tensor, Tensor]:
        reals, imags = [], []
        for run, norm, proj in zip(self.runs, self.norms, self.projections, strict=True):
            band = x[:, :, run.first_band : run.first_band + run.bands]
            real_imag = F.glu(proj(norm(band)), dim=-1).float()  # [batch, frames, bands, 2w]
            real, imag = real_imag.chunk(2, dim=-1)
            reals.append(real.flatten(-2))
            imags.append(imag.flatten(-2))
        return torch.cat(reals, dim=-1), torch.cat(imags, dim=-1)
