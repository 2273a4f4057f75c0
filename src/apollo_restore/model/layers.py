"""Building blocks of the generator, all channels-last: ``x`` is ``[batch, frames, bands, features]``.

Per-band layers keep one weight slice per band and run as a single batched matmul over the bands
(``BandwiseLinear``), so there is no Python loop over the 80 bands.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

#: frames per chunk for per-frame work when no gradient is needed (bounds memory, same result)
INFERENCE_FRAME_CHUNK = 128


def map_frames(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Apply a per-frame function to ``x [batch, frames, ...]``, in frame chunks when gradients are off."""
    if torch.is_grad_enabled() or x.shape[1] <= INFERENCE_FRAME_CHUNK:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(INFERENCE_FRAME_CHUNK, dim=1)], dim=1)


class RMSNorm(nn.Module):
    """Scale-only RMS normalisation over the last axis, computed in float32 (eps 1e-5).

    ``weight_shape`` is ``(dim,)`` for a shared norm or ``(bands, dim)`` for one norm per band, applied to
    ``x [..., bands, dim]`` by broadcasting.
    """

    def __init__(self, *weight_shape: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(*weight_shape))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


class BandwiseLinear(nn.Module):
    """A separate linear map per band: ``[..., bands, in_dim] -> [..., bands, out_dim]``."""

    def __init__(self, bands: int, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(bands, out_dim, in_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(bands, out_dim).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = torch.einsum("...ki,koi->...ko", x, self.weight)
        return y if self.bias is None else y + self.bias


def rope_tables(positions: int, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos/sin ``[positions, head_dim]`` for rotary embeddings on interleaved pairs (2i, 2i+1)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * inv_freq[None]
    angles = angles.repeat_interleave(2, dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of ``x [..., positions, head_dim]`` by position-dependent angles."""
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return x * cos + rotated * sin


class BandTransformer(nn.Module):
    """Pre-norm RoPE transformer layer across the band axis; every frame is an independent sequence.

    FFN: ``h = silu(W_in x)``, split into (gate, z); ``W_out(silu(gate) * z)`` (gate passes SiLU twice, as in
    the reference release).
    """

    def __init__(self, dim: int, heads: int, bands: int, theta: float):
        super().__init__()
        self.heads = heads
        self.attn_norm = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.ffn_norm = RMSNorm(dim)
        self.ffn_in = nn.Linear(dim, 8 * dim, bias=False)
        self.ffn_out = nn.Linear(4 * dim, dim, bias=False)
        cos, sin = rope_tables(bands, dim // heads, theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x [batch, frames, bands, dim]`` -> same shape."""
        return map_frames(self._forward, x)

    def _forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        x = rearrange(x, "b t k n -> (b t) k n")
        qkv = self.qkv(self.attn_norm(x))
        q, k, v = rearrange(qkv, "s k (h three d) -> three s h k d", three=3, h=self.heads)
        q = apply_rope(q, self.rope_cos, self.rope_sin)
        k = apply_rope(k, self.rope_cos, self.rope_sin)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.attn_out(rearrange(attended, "s h k d -> s k (h d)"))
        gate, z = F.silu(self.ffn_in(self.ffn_norm(x))).chunk(2, dim=-1)
        x = x + self.ffn_out(F.silu(gate) * z)
        return rearrange(x, "(b t) k n -> b t k n", b=batch)


class TemporalConvBlock(nn.Module):
    """Residual block along time, weights shared by all bands: depthwise conv -> RMSNorm -> 1x1 (4x) -> SiLU -> 1x1.

    Non-causal: symmetric padding. Causal: the conv sees only the past; ``history`` ``[batch, kernel-1, bands,
    dim]`` holds the previous input frames (zeros at the start), so a stream processed piecewise equals one pass.
    """

    def __init__(self, dim: int, kernel: int, causal: bool):
        super().__init__()
        self.kernel = kernel
        self.causal = causal
        self.dwconv = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = RMSNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``x [batch, frames, bands, dim]`` -> (same shape, new history or None when non-causal)."""
        batch, bands = x.shape[0], x.shape[2]
        if self.causal:
            if history is None:
                history = x.new_zeros(batch, self.kernel - 1, bands, x.shape[3])
            padded = torch.cat([history, x], dim=1)
            new_history = padded[:, padded.shape[1] - (self.kernel - 1):]
            h = rearrange(padded, "b t k n -> (b k) n t")
        else:
            new_history = None
            h = F.pad(rearrange(x, "b t k n -> (b k) n t"), (self.kernel // 2, self.kernel // 2))
        h = rearrange(self.dwconv(h), "(b k) n t -> b t k n", b=batch, k=bands)
        return x + map_frames(self._pointwise, h), new_history

    def _pointwise(self, h: Tensor) -> Tensor:
        return self.fc2(F.silu(self.fc1(self.norm(h))))
