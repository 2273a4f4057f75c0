"""Building blocks of the generator, all channels-last: ``x`` is ``[batch, frames, bands, features]``.

Per-band layers keep one weight slice per band and run as a single batched matmul over the bands
(``BandwiseLinear``), so there is no Python loop over the 80 bands.

Speed. Without gradients, every step runs over chunks of frames (`frame_chunk`), so no 8N or 4N expansion of
all frames is ever held (memory depends on the block, not on the model's width), and each chunk's intermediates
stay near the CPU's L2 cache, so the element-wise work between the matmuls reads cache rather than memory
(measured chunk sizes per model and thread count: docs/evaluation.md).
The temporal convolutions run on the channels-last tensor directly (a depthwise 2-D convolution over a
``[batch, features, frames, bands]`` view), so the band transformer and the convolutions share one layout and
nothing is transposed between them. With gradients on, each step runs once over the whole tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: bytes of the widest intermediate (e.g. the FFN's 8N values per token) of one inference chunk, by where the
#: network runs. Measured on a 2-core AMX Xeon (2 MiB L2 per core; docs/evaluation.md): on the CPU in float32,
#: 4 MiB (6 frames at 256x6, 25 at 64x2) keeps the element-wise work between the matmuls in cache: against 64
#: MiB, 64x2 10 s 1.35x faster at one thread, 1.20x at two, 8x at load 7; 256x6 1.07x at 10 s. In bf16 or fp16
#: the matrix units want more rows per matmul: 8 MiB (256x6 10 s 1.36x faster than at 2 MiB). Elsewhere (GPUs)
#: large chunks, one big kernel per op.
CPU_FLOAT32_CHUNK_BYTES = 4 << 20
CPU_REDUCED_CHUNK_BYTES = 8 << 20
DEVICE_CHUNK_BYTES = 64 << 20


def frame_chunk(values_per_frame: int, device: torch.device, dtype: torch.dtype) -> int:
    """Frames per inference chunk when the widest intermediate holds ``values_per_frame`` values of ``dtype``
    per frame (``bands * 8 * dim`` for the FFN) on ``device``."""
    if device.type != "cpu":
        budget = DEVICE_CHUNK_BYTES
    else:
        budget = CPU_FLOAT32_CHUNK_BYTES if dtype == torch.float32 else CPU_REDUCED_CHUNK_BYTES
    return max(1, budget // (values_per_frame * dtype.itemsize))


def spans(length: int, most: int) -> list[tuple[int, int]]:
    """``[0, length)`` cut into equal spans of at most ``most`` (103 frames in chunks of 102 are 52 + 51)."""
    count = -(-length // most)
    size = -(-length // max(count, 1))
    return [(start, min(length, start + size)) for start in range(0, length, size)]


def map_frames(fn: Callable[[Tensor, Tensor | None], Tensor], x: Tensor, frames: int) -> Tensor:
    """Apply a per-frame function to ``x [batch, frames, bands, dim]``.

    ``fn(chunk [n, bands, dim], out)`` returns its result, written into ``out`` (same shape) unless that is
    None. Without gradients it runs over chunks of ``frames`` frames of the flattened batch x frames axis, each
    writing its part of one output tensor; with gradients in one call.
    """
    flat = x.flatten(0, 1)
    if torch.is_grad_enabled() or flat.shape[0] <= frames:
        return fn(flat, None).view_as(x)
    out = torch.empty_like(flat)
    for start, stop in spans(flat.shape[0], frames):
        fn(flat[start:stop], out[start:stop])
    return out.view_as(x)


def _inplace() -> bool:
    """Whether activations may overwrite their input: only without gradients. With them, autograd would save a
    copy of the input for the backward pass and copy the gradient back through the view (4 full-size copies and a
    fill per activation; a 64x2 CPU training step 1.05-1.07x faster without them, docs/training.md)."""
    return not torch.is_grad_enabled()


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
        mean_square = torch.linalg.vector_norm(x32, dim=-1, keepdim=True).square() / x.shape[-1]  # one pass over x
        return (x32 * torch.rsqrt(mean_square + self.eps)).to(x.dtype) * self.weight


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
    """cos and signed sin ``[positions, 1, head_dim]`` for rotary embeddings on interleaved pairs (2i, 2i+1).

    The sin table carries the rotation's signs (``-sin`` at even, ``+sin`` at odd places), see `apply_rope`.
    The middle axis broadcasts over heads.
    """
    # on the CPU even when a model is built on the meta device to read its shapes (a meta arange imports sympy)
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device="cpu") / head_dim)
    angles = torch.arange(positions, dtype=torch.float64, device="cpu")[:, None] * inv_freq[None]
    sin = torch.stack((-angles.sin(), angles.sin()), dim=-1).flatten(-2)
    return angles.cos().repeat_interleave(2, dim=-1).float()[:, None], sin.float()[:, None]


def apply_rope(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of ``x [..., positions, heads, head_dim]`` by position-dependent angles:
    ``(x0 cos - x1 sin, x1 cos + x0 sin)`` = ``x * cos + swap(x) * signed_sin`` with ``swap(x0, x1) = (x1, x0)``."""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return torch.addcmul(x * cos, swapped, signed_sin)


class BandTransformer(nn.Module):
    """Pre-norm RoPE transformer layer across the band axis; every frame is an independent sequence.

    FFN: ``h = silu(W_in x)``, split into (gate, z); ``W_out(silu(gate) * z)`` (gate passes SiLU twice, as in
    the reference release).
    """

    def __init__(self, dim: int, heads: int, bands: int, theta: float):
        super().__init__()
        self.heads = heads
        self.chunk: int | None = None  # frames per inference chunk; None: `frame_chunk` of the input
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
        return map_frames(self._forward, x, self.chunk or frame_chunk(8 * x.shape[-2] * x.shape[-1], x.device, x.dtype))

    def _forward(self, x: Tensor, out: Tensor | None) -> Tensor:
        """``x [sequences, bands, dim]`` -> same (into ``out`` unless None)."""
        # Q/K/V interleaved per head: [s, k, heads, (q k v), d]; views, no copies
        qkv = self.qkv(self.attn_norm(x)).unflatten(-1, (self.heads, 3, -1))
        q = apply_rope(qkv[..., 0, :], self.rope_cos, self.rope_sin)  # [s, k, h, d]
        k = apply_rope(qkv[..., 1, :], self.rope_cos, self.rope_sin)
        v = qkv[..., 2, :]
        attended = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + self.attn_out(attended.transpose(1, 2).flatten(-2))
        gate, z = F.silu(self.ffn_in(self.ffn_norm(x)), inplace=_inplace()).chunk(2, dim=-1)
        return torch.add(x, self.ffn_out(F.silu(gate) * z), out=out)


class TemporalConvBlock(nn.Module):
    """Residual block along time, weights shared by all bands: depthwise conv -> RMSNorm -> 1x1 (4x) -> SiLU -> 1x1.

    Non-causal: symmetric zero padding. Causal: the conv sees only the past; ``history`` ``[batch, kernel-1,
    bands, dim]`` holds the previous input frames (zeros at the start), so a stream processed piecewise equals
    one pass.
    """

    def __init__(self, dim: int, kernel: int, causal: bool):
        super().__init__()
        self.kernel = kernel
        self.causal = causal
        self.chunk: int | None = None  # frames per inference chunk; None: `frame_chunk` of the input (4N wide)
        self.dwconv = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = RMSNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    @property
    def reach(self) -> tuple[int, int]:
        """Input frames before and after an output frame that it depends on."""
        return (self.kernel - 1, 0) if self.causal else (self.kernel // 2, self.kernel // 2)

    def forward(self, x: Tensor, history: Tensor | None = None, inplace: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """``x [batch, frames, bands, dim]`` -> (same shape, new history or None when non-causal).

        ``inplace`` (without gradients): the result is written over ``x`` chunk by chunk (each chunk's input
        frames that the next chunk still reads are kept aside first), so no second residual stream is held."""
        before, after = self.reach
        frames = x.shape[1]
        inplace = inplace and not torch.is_grad_enabled()
        new_history = None
        if self.causal:  # the last input frames, copied first when x is about to be overwritten
            new_history = self._window(x, history, frames - before, frames)
            new_history = new_history.clone() if inplace else new_history
        chunk = self.chunk or frame_chunk(4 * x.shape[-2] * x.shape[-1], x.device, x.dtype)
        if torch.is_grad_enabled() or x.shape[0] * frames <= chunk:
            residual = self._step(self._window(x, history, -before, frames + after))
            return (x.add_(residual) if inplace else x + residual), new_history
        out = x if inplace else torch.empty_like(x)
        for b in range(x.shape[0]):
            item, past = x[b : b + 1], None if history is None else history[b : b + 1]
            carried = None  # in place: the input frames [start - before, start), kept before they were overwritten
            for start, stop in spans(frames, chunk):
                if carried is None:
                    window = self._window(item, past, start - before, stop + after)
                else:
                    window = torch.cat([carried, self._window(item, None, start, stop + after)], dim=1)
                if inplace:  # input frames [stop - before, stop), still as they came in
                    carried = window[:, stop - start : stop - start + before].clone()
                torch.add(item[:, start:stop], self._step(window), out=out[b : b + 1, start:stop])
        return out, new_history

    def _window(self, x: Tensor, history: Tensor | None, start: int, stop: int) -> Tensor:
        """Input frames ``[start, stop)`` of ``x [batch, frames, ...]``: frames before 0 come from ``history``
        (its last ones; zeros when None), frames past the end are zeros."""
        frames = x.shape[1]
        if history is None and start <= 0 and stop >= frames:  # the whole sequence (traces to one ONNX Pad)
            return F.pad(x, (0, 0, 0, 0, -start, stop - frames))
        inner = x[:, max(start, 0) : min(stop, frames)]
        if start >= 0 and stop <= frames:
            return inner
        parts = [inner]
        if start < 0:
            past = x.new_zeros(x.shape[0], -start, *x.shape[2:]) if history is None else history[:, start:]
            parts.insert(0, past)
        if stop > frames:
            parts.append(x.new_zeros(x.shape[0], stop - max(start, frames), *x.shape[2:]))
        return torch.cat(parts, dim=1)

    def _step(self, window: Tensor) -> Tensor:
        """The residual branch for the frames a window covers: ``[b, n + kernel - 1, k, dim]`` -> ``[b, n, k, dim]``.

        The depthwise conv runs on the channels-last view ``[b, dim, frames, bands]`` with a ``kernel x 1``
        filter, so the tensor keeps its layout."""
        weight = self.dwconv.weight.unsqueeze(-1)  # [dim, 1, kernel, 1]
        h = F.conv2d(window.permute(0, 3, 1, 2), weight, self.dwconv.bias, groups=weight.shape[0])
        h = h.permute(0, 2, 3, 1)
        return self.fc2(F.silu(self.fc1(self.norm(h)), inplace=_inplace()))
