"""The Apollo generator: STFT -> band split -> B x (band transformer, temporal convs) -> band merge -> iSTFT."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from copy import deepcopy

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from apollo_restore.errors import ApolloError
from apollo_restore.model.bands import BandMerge, BandSplit
from apollo_restore.model.config import ApolloConfig
from apollo_restore.model.layers import BandTransformer, TemporalConvBlock
from apollo_restore.stft import Framing

#: state of a causal model between calls: one history tensor per temporal conv block
ConvState = list[Tensor]
#: largest generator built (4 GB of float32 weights; the paper's has 16.5 M), so that a bad config fails at once
MAX_PARAMETERS = 1_000_000_000


class BandSequenceBlock(nn.Module):
    """One BS module: a transformer across bands, then ``tcn_blocks`` residual conv blocks along time."""

    def __init__(self, config: ApolloConfig):
        super().__init__()
        dim = config.feature_dim
        self.band = BandTransformer(dim, config.num_heads, config.num_bands, config.rope_theta)
        self.time = nn.ModuleList(
            TemporalConvBlock(dim, config.conv_kernel, config.causal)
            for _ in range(config.tcn_blocks)
        )

    def forward(self, x: Tensor, state: ConvState | None) -> tuple[Tensor, ConvState]:
        x = self.band(x)  # a new tensor, so the convolutions may write over it
        new_state = []
        for i, block in enumerate(self.time):
            x, history = block(x, None if state is None else state[i], inplace=True)
            if history is not None:
                new_state.append(history)
        return x, new_state


class Apollo(nn.Module):
    """Apollo restoration generator.

    ``forward(audio [batch, channels, samples]) -> [batch, channels, samples]``. Channels are folded into the
    batch (each channel restored alone with shared weights). STFT (``framing``, `apollo_restore.stft`): periodic
    Hann, ``n_fft = win = 20 ms``, hop 10 ms, centred frames (reflect padding; zero padding in the causal
    variant). With ``config.residual`` the head's output, times each frame's level, is added to the input
    spectrum. The generator restores every bin; rules on where it may write (`apollo_restore.gate`) are applied
    by its callers through ``post``.
    """

    def __init__(self, config: ApolloConfig | None = None):
        super().__init__()
        self.config = config = config or ApolloConfig()
        if (count := parameter_count(config)) > MAX_PARAMETERS:
            raise ApolloError(f"model config asks for {count:,} parameters (feature_dim {config.feature_dim}, "
                              f"num_layers {config.num_layers}); at most {MAX_PARAMETERS:,} are built")
        self.split = BandSplit(config.widths, config.feature_dim)
        self.blocks = nn.ModuleList(BandSequenceBlock(config) for _ in range(config.num_layers))
        self.merge = BandMerge(config.widths, config.feature_dim)
        #: recompute each block's activations in the backward pass instead of storing them (training memory
        #: ~1/num_layers of the activations, ~30 % more compute); a training option, not part of the config
        self.gradient_checkpointing = False
        if config.residual:
            for projection in self.merge.projections:
                nn.init.zeros_(projection.weight)
                nn.init.zeros_(projection.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- spectral path ---------------------------------------------------------------------------------------

    @property
    def framing(self) -> Framing:
        """How audio becomes the spectra this model restores, and back (``config.framing``)."""
        return self.config.framing

    def spectral_forward(self, spec: Tensor, state: list[ConvState] | None = None) -> tuple[Tensor, list[ConvState]]:
        """Restore a spectrogram: complex ``[batch, frames, bins]`` -> same shape.

        ``state`` carries the causal model's conv histories from the previous call (None = start of stream);
        the returned state continues it. Non-causal models return an empty state.
        """
        real, imag, new_state = self.network(spec.real, spec.imag, state)
        return torch.complex(real, imag), new_state

    def network(self, real: Tensor, imag: Tensor, state: list[ConvState] | None = None
                ) -> tuple[Tensor, Tensor, list[ConvState]]:
        """`spectral_forward` on float32 ``real, imag [batch, frames, bins]`` (no complex arithmetic, so it exports
        to ONNX); returns the restored ``real, imag`` and the new state."""
        x = self.split(real, imag)
        new_state = []
        for i, block in enumerate(self.blocks):
            block_in = None if state is None else state[i]
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x, block_state = checkpoint(block, x, block_in, use_reentrant=False)
            else:
                x, block_state = block(x, block_in)
            new_state.append(block_state)
        out_real, out_imag = self.merge(x)
        if self.config.residual:
            frame_level = (real.square() + imag.square()).mean(dim=-1, keepdim=True).sqrt()
            out_real, out_imag = real + out_real * frame_level, imag + out_imag * frame_level
        return out_real, out_imag, new_state

    def with_precision(self, dtype: torch.dtype) -> Apollo:
        """A copy whose network (band split and merge, blocks) holds its weights and activations in ``dtype``;
        the STFT, the gain-shape features, the head's output and the residual sum stay float32.

        ``torch.qint8``: the blocks' linear layers dynamically quantised (int8 weights, per-call int8
        activations; CPU), everything else float32."""
        copy = deepcopy(self)
        if dtype == torch.qint8:
            with warnings.catch_warnings():  # torch.ao's eager-mode API is deprecated in favour of torchao
                warnings.simplefilter("ignore")
                torch.ao.quantization.quantize_dynamic(copy.blocks, {nn.Linear}, dtype=torch.qint8, inplace=True)
            return copy
        for part in (copy.split, copy.blocks, copy.merge):
            part.to(dtype)
        return copy

    def forward(self, audio: Tensor, post: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
        """``[batch, channels, samples]`` -> same. ``post(spectrum_in, restored) -> restored`` (complex
        ``[batch * channels, frames, bins]``, channels of an example adjacent) runs before the inverse STFT,
        e.g. a bound `apollo_restore.gate.Gate`."""
        batch, channels, length = audio.shape
        flat = audio.reshape(batch * channels, length)
        padded = self.framing.padded_length(length)
        if padded > length:
            flat = torch.nn.functional.pad(flat, (0, padded - length))
        spec = self.framing.stft(flat)
        restored, _ = self.spectral_forward(spec)
        if post is not None:
            restored = post(spec, restored)
        out = self.framing.istft(restored, padded)[:, :length]
        return out.reshape(batch, channels, length).to(audio.dtype)


def expected_state_shapes(config: ApolloConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in the state dict of an Apollo generator for ``config``, without allocating
    one: the split, one band-sequence block (all are alike) and the merge are built on the meta device."""
    with torch.device("meta"):
        parts = {"split": BandSplit(config.widths, config.feature_dim),
                 "merge": BandMerge(config.widths, config.feature_dim)}
        block = BandSequenceBlock(config)
    shapes = {f"{name}.{key}": tuple(value.shape) for name, part in parts.items()
              for key, value in part.state_dict().items()}
    for i in range(config.num_layers):
        shapes.update({f"blocks.{i}.{key}": tuple(value.shape) for key, value in block.state_dict().items()})
    return shapes


def parameter_count(config: ApolloConfig) -> int:
    """Parameters of an Apollo generator for ``config``, counted without allocating them."""
    return sum(math.prod(shape) for shape in expected_state_shapes(config).values())
