"""`ApolloConfig`: every number that defines an Apollo generator, saved beside each checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from apollo_restore.errors import ApolloError


@dataclass(frozen=True)
class ApolloConfig:
    """Hyper-parameters of the generator. Defaults are the paper's 256 x 6 model (16,539,308 parameters).

    The STFT uses ``win_ms`` windows with a hop of half a window (20 ms / 10 ms). Unless ``band_widths`` is
    given, the spectrum is cut as the reference does: ``num_bands - 1`` bands of ``int(n_fft / 160)`` bins and
    one top band holding the remaining bins.

    ``residual`` (not in the paper, off for the paper config and for reference checkpoints): the head predicts
    a correction, in units of its frame's level (RMS over bins), added to the input spectrum. It starts at zero,
    so an untrained model is the identity and small CPU-trained models converge far faster (the low band needs
    no learning); and what it adds follows the music's loudness frame by frame, so a silent frame stays silent.

    """

    sample_rate: int = 44100
    win_ms: float = 20.0
    feature_dim: int = 256
    num_layers: int = 6
    num_heads: int = 8
    num_bands: int = 80
    band_widths: tuple[int, ...] | None = None
    causal: bool = False
    residual: bool = False
    conv_kernel: int = 7
    tcn_blocks: int = 3
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.band_widths is not None:
            object.__setattr__(self, "band_widths", tuple(int(w) for w in self.band_widths))
        problems = []
        if self.sample_rate <= 0 or self.n_fft < 4:
            problems.append(f"sample_rate {self.sample_rate} with win_ms {self.win_ms} gives no usable STFT")
        if self.feature_dim % self.num_heads or (self.feature_dim // self.num_heads) % 2:
            problems.append(f"feature_dim {self.feature_dim} must split into {self.num_heads} heads of even size")
        if self.conv_kernel % 2 == 0:
            problems.append(f"conv_kernel must be odd, got {self.conv_kernel}")
        widths = self.widths
        if sum(widths) != self.num_bins or min(widths) < 1:
            problems.append(f"band widths {widths} do not tile the {self.num_bins} STFT bins")
        if problems:
            raise ApolloError("invalid model config: " + "; ".join(problems))

    @property
    def n_fft(self) -> int:
        """Window and FFT length in samples (882 at 44.1 kHz)."""
        return int(self.sample_rate * self.win_ms / 1000)

    @property
    def hop(self) -> int:
        """Hop in samples: half a window (441 at 44.1 kHz)."""
        return self.n_fft // 2

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def widths(self) -> tuple[int, ...]:
        """Bins per band, low to high."""
        if self.band_widths is not None:
            return self.band_widths
        width = max(1, int(self.n_fft / 160))
        return (width,) * (self.num_bands - 1) + (self.num_bins - width * (self.num_bands - 1),)

    @property
    def context_frames(self) -> tuple[int, int]:
        """Frames of (past, future) context one output frame depends on through the time convolutions."""
        reach = self.num_layers * self.tcn_blocks * (self.conv_kernel - 1)
        return (reach, 0) if self.causal else (reach // 2, reach // 2)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["band_widths"] is not None:
            data["band_widths"] = list(data["band_widths"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApolloConfig:
        """Build from a mapping; unknown keys are an error naming the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ApolloError(f"unknown model config key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> ApolloConfig:
        """``"256x6"`` -> feature_dim 256, 6 layers (plus any overrides)."""
        try:
            dim, layers = (int(part) for part in size.lower().split("x"))
        except ValueError:
            raise ApolloError(f"model size must look like 256x6 (feature_dim x layers), got {size!r}") from None
        return cls(feature_dim=dim, num_layers=layers, **overrides)
