"""`CausalStep`: a causal Apollo's network for the few frames of one streaming call, with folded weights.

At one 10 ms frame the network is small matrices: the cost is the number of tensor operations (each a few
microseconds of dispatch), not their arithmetic (docs/streaming.md, "Where a frame's time goes"). The step
computes exactly the layers of `Apollo.network` with as few operations as the maths allows:

- every RMSNorm's weight is folded into the linear map that follows it (``norm(x) @ W.T = rms(x) @ (W * w).T``);
- the QKV projection's rows are regrouped as queries, keys, values, so that RoPE rotates queries and keys
  together (one multiply and one multiply-add);
- linear maps with a residual are one ``addmm`` (``x + h @ W.T``); the band split and merge are one batched
  matmul with bias (``baddbmm``) per run of equal-width bands;
- the conv histories are the same tensors as `Apollo.spectral_forward`'s state (``[channels, kernel - 1, bands,
  dim]`` per conv block): a new frame is appended, the depthwise conv runs on the window, and the window's last
  ``kernel - 1`` frames (a view, no copy) are the next state. The two paths continue each other's state.

``step(real, imag, state) -> (real, imag, state)``: float32 ``[channels, frames, bins]``; any number of frames
(several pending frames run as one batch). Output equals `Apollo.spectral_forward` to float rounding (tested
<= 1e-5). The weights are copied when the step is built: it does not follow later changes to the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from apollo_restore.errors import ApolloError
from apollo_restore.model.apollo import Apollo, ConvState
from apollo_restore.model.bands import GAIN_EPS, BandRun
from apollo_restore.model.layers import BandTransformer, TemporalConvBlock, apply_rope


@dataclass(frozen=True)
class _Transformer:
    """One band transformer's folded weights (``[out, in]`` like `nn.Linear`)."""

    eps: float
    heads: int
    qkv: Tensor  # [3 dim, dim]: queries, keys, values (each heads x head_dim), the attention norm folded in
    cos: Tensor  # [bands, 2 dim]: RoPE for queries and keys together (`layers.rope_tables`)
    sin: Tensor  # [bands, 2 dim], signed
    out: Tensor  # [dim, dim]
    ffn_in: Tensor  # [8 dim, dim], the FFN norm folded in
    ffn_out: Tensor  # [dim, 4 dim]

    @classmethod
    def fold(cls, layer: BandTransformer) -> _Transformer:
        heads = layer.heads
        # the module's rows are interleaved per head, [heads, (q k v), head_dim]: regroup them as [(q k v), heads, ...]
        qkv = layer.qkv.weight.unflatten(0, (heads, 3, -1)).transpose(0, 1).flatten(0, 2)
        cos, sin = (table.expand(-1, 2 * heads, -1).flatten(1) for table in (layer.rope_cos, layer.rope_sin))
        return cls(
            eps=layer.attn_norm.eps, heads=heads, qkv=_own(qkv * layer.attn_norm.weight), cos=_own(cos), sin=_own(sin),
            out=_own(layer.attn_out.weight), ffn_in=_own(layer.ffn_in.weight * layer.ffn_norm.weight),
            ffn_out=_own(layer.ffn_out.weight),
        )

    def __call__(self, x: Tensor) -> Tensor:
        """``x [sequences, bands, dim]`` (contiguous) -> same."""
        sequences, bands, dim = x.shape
        flat = x.view(-1, dim)
        qkv = (_rms(flat, self.eps) @ self.qkv.T).view(sequences, bands, 3 * dim)
        rotated = apply_rope(qkv[..., : 2 * dim], self.cos, self.sin)  # [sequences, bands, 2 dim]
        q, k, v = (part.unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for part in (*rotated.chunk(2, dim=-1), qkv[..., 2 * dim :]))
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(-1, dim)
        flat = torch.addmm(flat, attended, self.out.T)
        hidden = F.silu(_rms(flat, self.eps) @ self.ffn_in.T, inplace=True)
        gate, z = hidden.chunk(2, dim=-1)
        return torch.addmm(flat, F.silu(gate, inplace=True).mul_(z), self.ffn_out.T).view_as(x)


@dataclass(frozen=True)
class _Conv:
    """One temporal conv block's folded weights."""

    eps: float
    weight: Tensor  # [kernel, 1, dim]: depthwise, oldest frame first
    bias: Tensor
    fc1: Tensor  # [4 dim, dim], the norm folded in
    fc1_bias: Tensor
    fc2: Tensor
    fc2_bias: Tensor

    @classmethod
    def fold(cls, block: TemporalConvBlock) -> _Conv:
        return cls(
            eps=block.norm.eps, weight=_own(block.dwconv.weight[:, 0].T.unsqueeze(1)), bias=_own(block.dwconv.bias),
            fc1=_own(block.fc1.weight * block.norm.weight), fc1_bias=_own(block.fc1.bias), fc2=_own(block.fc2.weight),
            fc2_bias=_own(block.fc2.bias),
        )

    def __call__(self, x: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
        """``x [channels, frames, bands, dim]``, ``history [channels, kernel - 1, bands, dim]`` -> (same as x,
        the new history)."""
        frames, dim = x.shape[1], x.shape[-1]
        window = torch.cat([history, x], dim=1)
        if frames == 1:  # a stream's usual call: the window is the kernel's span, one product and one sum
            h = (window * self.weight).sum(1, keepdim=True).add_(self.bias)
        else:  # depthwise along frames, tap by tap (this form also exports with the frame count dynamic)
            h = torch.addcmul(self.bias, window[:, :frames], self.weight[0])
            for tap in range(1, self.weight.shape[0]):
                h = h.addcmul_(window[:, tap : tap + frames], self.weight[tap])
        h = F.silu(torch.addmm(self.fc1_bias, _rms(h, self.eps).view(-1, dim), self.fc1.T), inplace=True)
        return torch.addmm(self.fc2_bias, h, self.fc2.T).view_as(x).add_(x), window[:, frames:]


@dataclass(frozen=True)
class _Bands:
    """The split's or the merge's folded weights for one run of equal-width bands (batched over its bands)."""

    run: BandRun
    weight: Tensor  # [bands, in, out]: the per-band norm folded in, transposed for bmm
    bias: Tensor  # [bands, 1, out]

    @classmethod
    def fold(cls, run: BandRun, norm: torch.nn.Module, projection: torch.nn.Module) -> _Bands:
        weight = projection.weight * norm.weight.unsqueeze(1)  # [bands, out, in] * [bands, 1, in]
        return cls(run, _own(weight.transpose(1, 2)), _own(projection.bias.unsqueeze(1)))


class CausalStep:
    """The network of a causal :class:`Apollo` for streaming; see the module docstring."""

    def __init__(self, model: Apollo):
        config = model.config
        if not config.causal:
            raise ApolloError("the streaming step needs a causal model (config causal: true)")
        self.config = config
        with torch.no_grad():
            self.split = [_Bands.fold(run, norm, proj) for run, norm, proj in
                          zip(model.split.runs, model.split.norms, model.split.projections, strict=True)]
            self.split_eps = model.split.norms[0].eps
            self.layers = [(_Transformer.fold(block.band), [_Conv.fold(conv) for conv in block.time])
                           for block in model.blocks]
            self.merge = [_Bands.fold(run, norm, proj) for run, norm, proj in
                          zip(model.merge.runs, model.merge.norms, model.merge.projections, strict=True)]
            self.merge_eps = model.merge.norms[0].eps

    def __call__(self, real: Tensor, imag: Tensor, state: list[ConvState] | None = None
                 ) -> tuple[Tensor, Tensor, list[ConvState]]:
        """float32 ``real, imag [channels, frames, bins]`` -> restored ``real, imag`` (same shape) and the new
        conv state (as `Apollo.spectral_forward`'s: ``state[layer][block] [channels, kernel - 1, bands, dim]``;
        None = the start of a stream)."""
        c = self.config
        channels, frames, bins = real.shape
        x = self._split(real.reshape(-1, bins), imag.reshape(-1, bins))  # [channels * frames, bands, dim]
        new_state = []
        for i, (transformer, convs) in enumerate(self.layers):
            x = transformer(x).view(channels, frames, c.num_bands, c.feature_dim)
            histories = []
            for j, conv in enumerate(convs):
                history = (x.new_zeros(channels, c.conv_kernel - 1, c.num_bands, c.feature_dim) if state is None
                           else state[i][j])
                x, history = conv(x, history)
                histories.append(history)
            new_state.append(histories)
            x = x.view(channels * frames, c.num_bands, c.feature_dim)
        out_real, out_imag = self._merge(x)
        if c.residual:
            flat_real, flat_imag = real.reshape(-1, bins), imag.reshape(-1, bins)
            level = torch.addcmul(flat_real.square(), flat_imag, flat_imag).mean(dim=-1, keepdim=True).sqrt_()
            out_real, out_imag = torch.addcmul(flat_real, out_real, level), torch.addcmul(flat_imag, out_imag, level)
        return out_real.view_as(real), out_imag.view_as(imag), new_state

    def _split(self, real: Tensor, imag: Tensor) -> Tensor:
        """``real, imag [tokens, bins]`` -> band embeddings ``[tokens, bands, dim]`` (contiguous)."""
        tokens = real.shape[0]
        parts = []
        for part in self.split:
            run = part.run
            pair = torch.cat([real[:, run.start : run.stop].view(tokens, run.bands, run.width),
                              imag[:, run.start : run.stop].view(tokens, run.bands, run.width)], dim=-1)
            gain = pair.square().sum(-1, keepdim=True).add_(GAIN_EPS).sqrt_()
            features = _rms(torch.cat([pair / gain, gain.log_()], dim=-1), self.split_eps)  # [re/g, im/g, log g]
            parts.append(torch.baddbmm(part.bias, features.transpose(0, 1), part.weight).transpose(0, 1))
        return torch.cat(parts, dim=1)

    def _merge(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [tokens, bands, dim]`` -> ``real, imag [tokens, bins]``."""
        tokens = x.shape[0]
        normed = _rms(x, self.merge_eps)
        reals, imags = [], []
        for part in self.merge:
            run = part.run
            band = normed[:, run.first_band : run.first_band + run.bands].transpose(0, 1)  # [bands, tokens, dim]
            pair = F.glu(torch.baddbmm(part.bias, band, part.weight), dim=-1).transpose(0, 1)  # [tokens, bands, 2w]
            reals.append(pair[..., : run.width].reshape(tokens, -1))
            imags.append(pair[..., run.width :].reshape(tokens, -1))
        return torch.cat(reals, dim=-1), torch.cat(imags, dim=-1)


def _rms(x: Tensor, eps: float) -> Tensor:
    """``x`` divided by its root mean square over the last axis (`layers.RMSNorm` without its weight)."""
    mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1])
    return x * mean_square.add_(eps).rsqrt_()


def _own(tensor: Tensor) -> Tensor:
    """A contiguous float32 copy, detached from the model's parameters."""
    return tensor.detach().to(torch.float32, memory_format=torch.contiguous_format, copy=True)
