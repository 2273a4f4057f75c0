"""Multi-resolution STFT discriminator (paper Table I).

Each sub-discriminator sees the Re/Im parts of every audio channel's STFT at one resolution, stacked as
``2 * channels`` input maps (or, with ``spectrum: log_magnitude``, one log-magnitude map per channel), and runs
seven 3x3 conv layers (widths h, 2h, ..., 32h, 1; strides 1, 2, 1, 2, 1,
2, 1), spectral norm and LeakyReLU(0.2) on all but the last. The waveform is first divided by its own L2
norm over channels and time, so the discriminator is blind to level. With the paper's 7 resolutions and
h = 8 it has 2.77 M parameters.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from apollo_restore.stft import Framing
from apollo_restore.train.config import DiscriminatorConfig

#: (width multiplier, stride) of the six hidden layers; the seventh maps to one logit map with stride 1
_HIDDEN_LAYERS = ((1, 1), (2, 2), (4, 1), (8, 2), (16, 1), (32, 2))
#: dynamic range of the log-magnitude input: bins further below the example's loudest bin are floored
LOG_RANGE_DB = 100.0


def log_magnitude(spec: torch.Tensor) -> torch.Tensor:
    """complex ``[batch, channels, freq, frames]`` -> ``ln(|S| + floor) - ln(max |S|)`` (<= ~0, level-invariant),
    the floor ``LOG_RANGE_DB`` below each example's loudest bin (silence gives a finite constant)."""
    magnitude = spec.abs()
    peak = magnitude.flatten(1).amax(dim=1).reshape(-1, 1, 1, 1) + torch.finfo(torch.float32).tiny
    return torch.log(magnitude / peak + 10 ** (-LOG_RANGE_DB / 20))


class SpectrogramDiscriminator(nn.Module):
    """One resolution: ``[batch, channels, samples]`` -> logits ``[batch, 1, F', T']`` and 6 feature maps."""

    def __init__(self, n_fft: int, audio_channels: int, hidden_channels: int, spectrum: str = "complex") -> None:
        super().__init__()
        self.framing = Framing(n_fft, n_fft // 2)  # reflect-padded centred frames, hop n_fft / 2
        self.spectrum = spectrum
        layers: list[nn.Module] = []
        width = audio_channels if spectrum == "log_magnitude" else 2 * audio_channels
        for multiplier, stride in _HIDDEN_LAYERS:
            conv = nn.Conv2d(width, hidden_channels * multiplier, kernel_size=3, stride=stride, padding=1)
            layers.append(nn.Sequential(spectral_norm(conv), nn.LeakyReLU(0.2)))
            width = hidden_channels * multiplier
        self.hidden = nn.ModuleList(layers)
        self.output = nn.Conv2d(width, 1, kernel_size=3, stride=1, padding=1)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``audio [batch, channels, samples]`` (already level-normalised) -> (logits, feature maps)."""
        spec = self.framing.stft(audio).transpose(-1, -2)  # [batch, channels, freq, frames]
        if self.spectrum == "log_magnitude":
            x = log_magnitude(spec).to(audio.dtype)
        else:
            x = rearrange(torch.view_as_real(spec), "b c f t ri -> b (c ri) f t").to(audio.dtype)
        features = []
        for layer in self.hidden:
            x = layer(x)
            features.append(x)
        return self.output(x), features


class MultiResolutionDiscriminator(nn.Module):
    """All resolutions of Table I. ``forward(audio [batch, channels, samples])`` -> (logits, features) lists."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiscriminatorConfig()
        self.discriminators = nn.ModuleList(
            SpectrogramDiscriminator(n_fft, self.config.audio_channels, self.config.hidden_channels,
                                     self.config.spectrum)
            for n_fft in self.config.fft_sizes
        )

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Logits ``[batch, 1, F_i', T_i']`` per resolution i, and per resolution the 6 hidden feature maps."""
        eps = torch.finfo(torch.float32).eps
        norm = audio.float().pow(2).sum(dim=(1, 2), keepdim=True).add(eps).sqrt()
        audio = (audio.float() / norm).to(audio.dtype)
        logits, features = [], []
        for discriminator in self.discriminators:
            out, maps = discriminator(audio)
            logits.append(out)
            features.append(maps)
        return logits, features

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
