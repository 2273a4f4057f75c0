"""The discriminator: multi-resolution STFT sub-discriminators (paper Table I), optionally beside
multi-period waveform ones (HiFi-GAN, not in the paper).

Each STFT sub-discriminator sees the Re/Im parts of every audio channel's STFT at one resolution, stacked as
``2 * channels`` input maps (or, with ``spectrum: log_magnitude``, one log-magnitude map per channel), and runs
seven 3x3 conv layers (widths h, 2h, ..., 32h, 1; strides 1, 2, 1, 2, 1,
2, 1), spectral norm and LeakyReLU(0.2) on all but the last. The waveform is first divided by its own L2
norm over channels and time, so the discriminator is blind to level. With the paper's 7 resolutions and
h = 8 it has 2.77 M parameters.

Each period sub-discriminator folds the level-normalised waveform (unit RMS) into ``[samples / p, p]`` and runs
HiFi-GAN's stack of ``(5, 1)`` convs (widths h, 4h, 16h, 32h with stride 3 along the folded time, then 32h and
one logit map with stride 1), weight norm and LeakyReLU(0.1): each period sees the samples ``p`` apart.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from apollo_restore.stft import Framing
from apollo_restore.train.config import DiscriminatorConfig

#: (width multiplier, stride) of the six hidden layers; the seventh maps to one logit map with stride 1
_HIDDEN_LAYERS = ((1, 1), (2, 2), (4, 1), (8, 2), (16, 1), (32, 2))
#: dynamic range of the log-magnitude input: bins further below the example's loudest bin are floored
LOG_RANGE_DB = 100.0
#: (width multiplier, stride along folded time) of a period sub-discriminator's hidden layers (HiFi-GAN)
_PERIOD_LAYERS = ((1, 3), (4, 3), (16, 3), (32, 3), (32, 1))
_NORMS = {"spectral": spectral_norm, "weight": weight_norm}


def log_magnitude(spec: torch.Tensor) -> torch.Tensor:
    """complex ``[batch, channels, freq, frames]`` -> ``ln(|S| + floor) - ln(max |S|)`` (<= ~0, level-invariant),
    the floor ``LOG_RANGE_DB`` below each example's loudest bin (silence gives a finite constant)."""
    magnitude = spec.abs()
    peak = magnitude.flatten(1).amax(dim=1).reshape(-1, 1, 1, 1) + torch.finfo(torch.float32).tiny
    return torch.log(magnitude / peak + 10 ** (-LOG_RANGE_DB / 20))


def _conv_stack(x: torch.Tensor, hidden: nn.ModuleList, output: nn.Module
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the hidden layers, keeping each one's output (for feature matching), then the logit layer."""
    features = []
    for layer in hidden:
        x = layer(x)
        features.append(x)
    return output(x), features


class SpectrogramDiscriminator(nn.Module):
    """One resolution: ``[batch, channels, samples]`` -> logits ``[batch, 1, F', T']`` and 6 feature maps."""

    def __init__(self, n_fft: int, audio_channels: int, hidden_channels: int, spectrum: str = "complex",
                 norm: str = "spectral") -> None:
        super().__init__()
        self.framing = Framing(n_fft, n_fft // 2)  # reflect-padded centred frames, hop n_fft / 2
        self.spectrum = spectrum
        layers: list[nn.Module] = []
        width = audio_channels if spectrum == "log_magnitude" else 2 * audio_channels
        for multiplier, stride in _HIDDEN_LAYERS:
            conv = nn.Conv2d(width, hidden_channels * multiplier, kernel_size=3, stride=stride, padding=1)
            layers.append(nn.Sequential(_NORMS[norm](conv), nn.LeakyReLU(0.2)))
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
        return _conv_stack(x, self.hidden, self.output)


class PeriodDiscriminator(nn.Module):
    """One period p: ``[batch, channels, samples]`` -> logits ``[batch, 1, T', p]`` and 5 feature maps."""

    def __init__(self, period: int, audio_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.period = period
        layers: list[nn.Module] = []
        width = audio_channels
        for multiplier, stride in _PERIOD_LAYERS:
            conv = nn.Conv2d(width, hidden_channels * multiplier, (5, 1), (stride, 1), padding=(2, 0))
            layers.append(nn.Sequential(weight_norm(conv), nn.LeakyReLU(0.1)))
            width = hidden_channels * multiplier
        self.hidden = nn.ModuleList(layers)
        self.output = weight_norm(nn.Conv2d(width, 1, (3, 1), padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``audio [batch, channels, samples]`` (unit L2 norm per example) -> (logits, feature maps)."""
        x = audio * math.sqrt(audio.shape[1] * audio.shape[2])  # unit L2 norm -> unit RMS
        pad = -x.shape[-1] % self.period
        if pad:
            x = nn.functional.pad(x, (0, pad), mode="reflect" if pad < x.shape[-1] else "constant")
        x = rearrange(x, "b c (t p) -> b c t p", p=self.period)
        return _conv_stack(x, self.hidden, self.output)


class Discriminator(nn.Module):
    """The STFT sub-discriminators of Table I, then the period ones (``config.periods``).
    ``forward(audio [batch, channels, samples])`` -> (logits, features) lists, one entry per sub-discriminator."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiscriminatorConfig()
        c = self.config
        self.discriminators = nn.ModuleList(
            [SpectrogramDiscriminator(n_fft, c.audio_channels, c.hidden_channels, c.spectrum, c.norm)
             for n_fft in c.fft_sizes]
            + [PeriodDiscriminator(period, c.audio_channels, c.period_channels) for period in c.periods]
        )

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Logits ``[batch, 1, ...]`` per sub-discriminator i, and per sub-discriminator its hidden feature maps."""
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
