"""`ApolloConfig`: every number that defines an Apollo generator, saved beside each checkpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from apollo_restore.errors import ApolloError
from apollo_restore.mapping import from_mapping
from apollo_restore.stft import Framing

#: inclusive bounds of the numeric fields, checked before anything is derived or allocated from a config (so a
#: corrupt or hostile config.json cannot ask for tens of GiB); generous around the paper's 256 x 6 at 44.1 kHz
LIMITS: dict[str, tuple[float, float]] = {
    "sample_rate": (4000, 384000),
    "win_ms": (1.0, 200.0),
    "feature_dim": (2, 4096),
    "num_layers": (1, 64),
    "num_heads": (1, 256),
    "num_bands": (1, 1024),
    "conv_kernel": (1, 63),
    "tcn_blocks": (1, 16),
    "rope_theta": (1.0, 1e9),
}
#: largest STFT (window) size in samples
MAX_N_FFT = 32768


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
        """Check every field (type, range, consistency), cheapest first, before anything is derived from them."""
        problems = self._type_problems()
        if not problems:
            if self.band_widths is not None:
                object.__setattr__(self, "band_widths", tuple(int(w) for w in self.band_widths))
            problems = self._range_problems() or self._consistency_problems()
        if problems:
            raise ApolloError("invalid model config: " + "; ".join(problems))

    def _type_problems(self) -> list[str]:
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.type.replace(" | None", "")
            if value is None and f.type.endswith("| None"):
                continue
            if kind == "bool":
                ok = isinstance(value, bool)
            elif kind == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif kind == "float":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            else:  # band_widths: a list of whole numbers
                ok = (isinstance(value, (list, tuple)) and len(value) <= LIMITS["num_bands"][1]
                      and all(isinstance(w, int) and not isinstance(w, bool) for w in value))
            if not ok:
                shown = repr(value) if len(repr(value)) < 60 else repr(value)[:60] + "..."
                problems.append(f"{f.name} must be {_TYPE_WORDS[kind]}, got {shown}")
        return problems

    def _range_problems(self) -> list[str]:
        problems = []
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                problems.append(f"{name} {value:{'' if isinstance(value, int) else 'g'}} is out of range "
                                f"[{low:g}, {high:g}]")
        if not problems and not 4 <= self.n_fft <= MAX_N_FFT:
            problems.append(f"sample_rate {self.sample_rate} with win_ms {self.win_ms:g} gives an STFT of {self.n_fft} "
                            f"samples (must be 4 to {MAX_N_FFT})")
        if not problems and self.num_bands > self.num_bins:
            problems.append(f"num_bands {self.num_bands} exceeds the {self.num_bins} STFT bins")
        return problems

    def _consistency_problems(self) -> list[str]:
        problems = []
        if self.feature_dim % self.num_heads or (self.feature_dim // self.num_heads) % 2:
            problems.append(f"feature_dim {self.feature_dim} must split into num_heads {self.num_heads} heads of even "
                            "size")
        if self.conv_kernel % 2 == 0:
            problems.append(f"conv_kernel must be odd, got {self.conv_kernel}")
        if self.band_widths is not None and len(self.band_widths) != self.num_bands:
            problems.append(f"band_widths has {len(self.band_widths)} entries for num_bands {self.num_bands}")
        elif sum(self.widths) != self.num_bins or min(self.widths) < 1:
            problems.append(f"band widths (num_bands {self.num_bands}, band_widths "
                            f"{'default' if self.band_widths is None else 'given'}) do not tile the {self.num_bins} "
                            "STFT bins with bands of at least one bin")
        return problems

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
    def framing(self) -> Framing:
        """The model's STFT framing: centred frames, reflect-padded (zero-padded when causal, so that no frame
        depends on samples after its window)."""
        return Framing(self.n_fft, self.hop, "constant" if self.causal else "reflect")

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
        """Build from a mapping (e.g. parsed JSON); an unknown key, a wrong type or a value out of range is one
        ApolloError naming the key."""
        widths = data.get("band_widths") if isinstance(data, dict) else None
        if isinstance(widths, list) and len(widths) > LIMITS["num_bands"][1]:  # before converting each entry
            raise ApolloError(f"invalid model config: band_widths has {len(widths):,} entries, at most "
                              f"{LIMITS['num_bands'][1]:g} bands")
        return from_mapping(cls, data, "model")

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> ApolloConfig:
        """``"256x6"`` -> feature_dim 256, 6 layers (plus any overrides)."""
        try:
            dim, layers = (int(part) for part in size.lower().split("x"))
        except ValueError:
            raise ApolloError(f"model size must look like 256x6 (feature_dim x layers), got {size!r}") from None
        return cls(feature_dim=dim, num_layers=layers, **overrides)


_TYPE_WORDS = {"bool": "true or false", "int": "an integer", "float": "a finite number",
               "tuple[int, ...]": "a list of integers (bins per band)"}
