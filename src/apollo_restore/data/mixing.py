"""The paper's on-the-fly training data: random stems of different songs mixed, then codec-degraded.

An example is 1-8 stems (or, with probability ``real_mixture_fraction``, a song's real mixture) cut to
``clip_seconds`` from active windows, each scaled by a random gain in ``gain_db``, summed, encoded at a
bitrate drawn per example, and both clean and degraded divided by the larger of their two peaks. Everything
random about item ``i`` comes from ``numpy.random.default_rng([seed, epoch, i])``, so items are reproducible
and independent of DataLoader workers and samplers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from apollo_restore.audio import fit_length, resample
from apollo_restore.data.activity import ActivityConfig, IndexedStem, build_index, read_segment
from apollo_restore.data.layouts import LAYOUTS, Song
from apollo_restore.degrade import Degradation, DegradeConfig, degrade_with_info
from apollo_restore.errors import ApolloError

#: Table II of the paper: what a clip contains
CATEGORIES = ("vocal", "single_stem", "multi_stem", "multi_stem_vocal")
CHANNELS = 2
SILENCE_PEAK = 1e-4
MAX_ATTEMPTS = 20


def category_of(vocal_flags: list[bool]) -> str:
    """The Table II category of a clip made of stems with these is-vocal flags."""
    if all(vocal_flags):
        return "vocal"
    if len(vocal_flags) == 1:
        return "single_stem"
    return "multi_stem_vocal" if any(vocal_flags) else "multi_stem"


@dataclass
class MixConfig:
    """Dataset roots with their layouts (one layout for all roots, or one per root) and mixing settings."""

    roots: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ("folder",)
    clip_seconds: float = 3.0
    sample_rate: int = 44100
    min_stems: int = 1
    max_stems: int = 8
    gain_db: tuple[float, float] = (-10.0, 10.0)
    real_mixture_fraction: float = 0.5
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    activity_threshold_db: float = -40.0
    cache_dir: str | None = None
    #: a pre-rendered pair cache (``apollo make-cache``) the trainer reads instead of mixing on the fly
    pair_cache: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.roots, (str, Path)):
            self.roots = (self.roots,)
        if isinstance(self.layouts, str):
            self.layouts = (self.layouts,)
        self.roots, self.layouts = tuple(str(r) for r in self.roots), tuple(self.layouts)
        self.gain_db = tuple(self.gain_db)
        if isinstance(self.degrade, dict):
            self.degrade = DegradeConfig(**self.degrade)
        if len(self.layouts) not in (1, len(self.roots)):
            raise ApolloError("give one dataset layout for all roots or one per root")
        for layout in self.layouts:
            if layout not in LAYOUTS:
                raise ApolloError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        if not 1 <= self.min_stems <= self.max_stems:
            raise ApolloError(f"need 1 <= min_stems <= max_stems, got {self.min_stems}, {self.max_stems}")
        if not 0.0 <= self.real_mixture_fraction <= 1.0 or self.clip_seconds <= 0:
            raise ApolloError("real_mixture_fraction must be in [0, 1] and clip_seconds positive")

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)

    def root_layouts(self) -> list[tuple[str, str]]:
        """``(root, layout)`` pairs."""
        layouts = self.layouts * len(self.roots) if len(self.layouts) == 1 else self.layouts
        return list(zip(self.roots, layouts, strict=True))

    def activity(self) -> ActivityConfig:
        return ActivityConfig(window_seconds=self.clip_seconds, threshold_db=self.activity_threshold_db)


@dataclass
class Example:
    """One rendered clip: ``clean`` and ``degraded`` float32 ``[2, samples]`` and how it was made."""

    clean: np.ndarray
    degraded: np.ndarray
    degradation: Degradation
    bitrate: int
    category: str
    real_mixture: bool
    stems: list[dict]

    def as_item(self) -> dict:
        """The dict the datasets yield (tensors ``[2, samples]``)."""
        return {"clean": torch.from_numpy(self.clean), "degraded": torch.from_numpy(self.degraded),
                "bitrate": self.bitrate, "category": self.category}


class MixtureDataset(Dataset):
    """Map-style dataset of ``epoch_size`` freshly mixed and degraded clips per epoch (see module doc)."""

    def __init__(self, config: MixConfig, split: str = "train", epoch_size: int = 1000, seed: int = 0):
        if not config.roots:
            raise ApolloError("no dataset roots given")
        self.config, self.split, self.epoch_size, self.seed, self.epoch = config, split, epoch_size, seed, 0
        self.songs: list[tuple[Song, list[IndexedStem]]] = []
        for root, layout in config.root_layouts():
            for song, stems in build_index(layout, root, split, config.activity(), config.cache_dir):
                active = [s for s in stems if s.starts.size]
                if active:
                    self.songs.append((song, active))
        if not self.songs:
            raise ApolloError(f"{', '.join(config.roots)}: no usable stems in split {split!r} "
                              f"(no audio files, or none active for {config.clip_seconds:g} s)")
        self._vocal = [[s for s in stems if s.stem.is_vocal] for _, stems in self.songs]
        self._other = [[s for s in stems if not s.stem.is_vocal] for _, stems in self.songs]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; items of different epochs are different mixes."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.epoch_size:
            raise IndexError(index)
        return self.render(np.random.default_rng([self.seed, self.epoch, int(index)])).as_item()

    def available_categories(self) -> list[str]:
        """The Table II categories this data can produce."""
        vocal = sum(bool(v) for v in self._vocal)
        other = sum(bool(o) for o in self._other)
        can = {"vocal": vocal > 0, "single_stem": other > 0, "multi_stem": other > 1,
               "multi_stem_vocal": vocal > 0 and other > 0}
        return [c for c in CATEGORIES if can[c]]

    def render(self, rng: np.random.Generator, degradation: Degradation | None = None,
               category: str | None = None) -> Example:
        """Draw one clip with ``rng``; optionally force the degradation and/or the category (forced
        categories are always mixed from stems)."""
        if category is not None and category not in self.available_categories():
            raise ApolloError(f"the dataset has no material for category {category!r}")
        for _ in range(MAX_ATTEMPTS):
            clean, stems, flags, real = self.draw_clean(rng, category)
            chosen = degradation or self.config.degrade.draw(rng)
            degraded, kbps = degrade_with_info(clean, self.config.sample_rate, chosen)
            peak = max(float(np.abs(clean).max()), float(np.abs(degraded).max()))
            if peak > SILENCE_PEAK:
                bitrate = kbps if chosen.vbr_quality is not None else int(chosen.bitrate or 0)
                if chosen.codec == "lowpass":
                    bitrate = 0
                return Example(clean / peak, degraded / peak, chosen, bitrate, category_of(flags), real, stems)
        raise ApolloError(f"split {self.split!r}: could not draw a non-silent clip in {MAX_ATTEMPTS} attempts")

    def draw_clean(self, rng: np.random.Generator, category: str | None = None
                   ) -> tuple[np.ndarray, list[dict], list[bool], bool]:
        """An unscaled clean clip ``[2, samples]``, its stems' metadata and is-vocal flags, and whether it
        is a real mixture."""
        real = category is None and rng.random() < self.config.real_mixture_fraction
        clean, stems, flags = self._real_mixture(rng) if real else self._stem_mix(rng, category)
        return clean, stems, flags, real

    def _clip(self, paths: tuple[Path, ...], rate: int, start: int) -> np.ndarray:
        """``clip_seconds`` from ``start`` (file samples) of the files summed -> ``[2, clip_samples]``."""
        length = self.config.clip_samples
        need = int(np.ceil(length * rate / self.config.sample_rate))
        audio = read_segment(paths, start, need)
        if audio.shape[0] == 1:
            audio = np.repeat(audio, CHANNELS, axis=0)
        return fit_length(resample(audio[:CHANNELS], rate, self.config.sample_rate), length)

    def _start(self, rng: np.random.Generator, stem: IndexedStem) -> tuple[int, int]:
        """A random active window of ``stem``: (grid start, jittered start) in file samples."""
        grid = int(stem.starts[rng.integers(stem.starts.size)])
        hop = round(self.config.activity().hop_seconds * stem.sample_rate)
        need = int(np.ceil(self.config.clip_seconds * stem.sample_rate))
        return grid, grid + int(rng.integers(max(1, min(hop, stem.length - need - grid + 1))))

    def _real_mixture(self, rng: np.random.Generator) -> tuple[np.ndarray, list[dict], list[bool]]:
        """A song's real mixture (its mixture file, or all its stems summed) at an active window."""
        song, stems = self.songs[rng.integers(len(self.songs))]
        anchor = stems[rng.integers(len(stems))]
        grid, start = self._start(rng, anchor)
        paths = (song.mixture,) if song.mixture else tuple(p for s in song.stems for p in s.paths)
        active = [s for s in stems if s.sample_rate == anchor.sample_rate and np.isin(grid, s.starts)]
        meta = [{"song": song.name, "family": s.stem.family, "file": str(s.stem.paths[0]),
                 "start_seconds": start / s.sample_rate, "gain_db": 0.0} for s in active]
        return self._clip(paths, anchor.sample_rate, start), meta, [s.stem.is_vocal for s in active]

    def _stem_mix(self, rng: np.random.Generator, category: str | None) -> tuple[np.ndarray, list[dict],
                                                                                  list[bool]]:
        """1..max_stems stems, each from a different song where possible, random gains, summed."""
        n = int(rng.integers(self.config.min_stems, self.config.max_stems + 1))
        if category in ("vocal", "single_stem"):
            pools = [self._vocal if category == "vocal" else self._other]
        elif category == "multi_stem":
            pools = [self._other] * max(2, n)
        elif category == "multi_stem_vocal":
            pools = [self._vocal] + [self._other] * (max(2, n) - 1)
        else:
            pools = [[v + o for v, o in zip(self._vocal, self._other, strict=True)]] * n
        picked = self._pick(rng, pools)
        gains = rng.uniform(*self.config.gain_db, size=len(picked))
        clean = np.zeros((CHANNELS, self.config.clip_samples), np.float32)
        meta = []
        for stem, gain in zip(picked, gains, strict=True):
            start = self._start(rng, stem)[1]
            clean += self._clip(stem.stem.paths, stem.sample_rate, start) * np.float32(10 ** (gain / 20))
            meta.append({"song": stem.stem.song, "family": stem.stem.family, "file": str(stem.stem.paths[0]),
                         "start_seconds": start / stem.sample_rate, "gain_db": float(gain)})
        return clean, meta, [s.stem.is_vocal for s in picked]

    @staticmethod
    def _pick(rng: np.random.Generator, pools: list[list[list[IndexedStem]]]) -> list[IndexedStem]:
        """One stem per pool (pool = stems per song), songs distinct while unused songs remain."""
        used: set[int] = set()
        picked = []
        for pool in pools:
            songs = [i for i, stems in enumerate(pool) if stems]
            fresh = [i for i in songs if i not in used] or songs
            song = fresh[rng.integers(len(fresh))]
            used.add(song)
            picked.append(pool[song][rng.integers(len(pool[song]))])
        return picked
