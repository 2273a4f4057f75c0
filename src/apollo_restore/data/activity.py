"""Energy-based source-activity detection and the cached index of active windows.

A stem's 10 ms frames are *active* when their RMS is within ``threshold_db`` of the stem's loudest frame
and above an absolute floor; a window of ``window_seconds`` (the clip length) starting on a ``hop_seconds``
grid is kept when more than ``min_active`` of its frames are active. The index is computed once per
dataset and split and cached as JSON (keyed by the files' sizes and mtimes and these settings; an index
of files that have changed since is deleted when the new one is written).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from apollo_restore.audio import read_audio
from apollo_restore.data.layouts import Song, Stem, discover
from apollo_restore.errors import ApolloError
from apollo_restore.files import atomic_write_text

INDEX_VERSION = 1


@dataclass(frozen=True)
class ActivityConfig:
    """Source-activity detector settings."""

    frame_seconds: float = 0.01
    window_seconds: float = 3.0
    hop_seconds: float = 0.5
    threshold_db: float = -40.0
    floor_db: float = -70.0
    min_active: float = 0.5


@dataclass(frozen=True)
class IndexedStem:
    """A stem with its file rate/length and the start samples (at ``sample_rate``) of its active windows."""

    stem: Stem
    sample_rate: int
    length: int  # samples
    starts: np.ndarray


def frame_rms_db(audio: np.ndarray, frame: int) -> np.ndarray:
    """``[channels, samples]`` -> RMS in dBFS of each whole ``frame``-sample frame (channels pooled),
    ``[samples // frame]``; silence is -inf-safe (floored at -200 dB)."""
    n = audio.shape[1] // frame
    power = np.square(audio[:, : n * frame].reshape(audio.shape[0], n, frame)).mean(axis=(0, 2))
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def read_stem(stem: Stem) -> tuple[np.ndarray, int]:
    """The whole stem (its files summed) as float32 ``[channels, samples]`` and its sample rate."""
    parts = [read_audio(p) for p in stem.paths]
    rate = parts[0][1]
    if any(r != rate for _, r in parts):
        raise ApolloError(f"{stem.paths[0].parent}: files of one stem have different sample rates")
    total = np.zeros((max(a.shape[0] for a, _ in parts), max(a.shape[1] for a, _ in parts)), np.float32)
    for audio, _ in parts:
        total[: audio.shape[0], : audio.shape[1]] += audio
    return total, rate


def read_segment(paths: tuple[Path, ...], start: int, length: int) -> np.ndarray:
    """``length`` samples from ``start`` of the files summed, float32 ``[channels, length]`` (zero-padded
    past the end)."""
    out: np.ndarray | None = None
    for path in paths:
        block, _ = read_audio(path, start, length)
        if out is None:
            out = np.zeros((block.shape[0], length), np.float32)
        channels = min(out.shape[0], block.shape[0])
        out[:channels, : block.shape[1]] += block[:channels]
    return out


def active_starts(audio: np.ndarray, sample_rate: int, config: ActivityConfig) -> np.ndarray:
    """Start samples of the active windows of ``[channels, samples]``, on the hop grid."""
    frame = max(1, round(config.frame_seconds * sample_rate))
    level = frame_rms_db(audio, frame)
    if level.size == 0:
        return np.zeros(0, np.int64)
    active = (level > level.max() + config.threshold_db) & (level > config.floor_db)
    per_window = max(1, round(config.window_seconds / config.frame_seconds))
    hop = max(1, round(config.hop_seconds / config.frame_seconds))
    if active.size < per_window:
        return np.zeros(0, np.int64)
    counts = np.concatenate([[0], np.cumsum(active)])
    first = np.arange(0, active.size - per_window + 1, hop)
    share = (counts[first + per_window] - counts[first]) / per_window
    return (first[share > config.min_active] * frame).astype(np.int64)


def _fingerprint(songs: list[Song]) -> str:
    """Hash of every stem file's path, size and mtime and its family."""
    digest = hashlib.sha1()
    for song in songs:
        for stem in song.stems:
            for path in stem.paths:
                stat = path.stat()
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stem.family}".encode())
    return digest.hexdigest()[:16]


def _cache_folder(root: Path, cache_dir: str | None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.access(root, os.W_OK):
        return root / ".apollo-index"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "apollo-restore"


def _write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload))


def build_index(layout: str, root: str | Path, split: str, config: ActivityConfig,
                cache_dir: str | None = None, progress: bool | None = None) -> list[tuple[Song, list[IndexedStem]]]:
    """Songs of a dataset split with the active windows of each stem, loaded from or written to the cache
    (``progress=None``: a progress bar while computing, on a terminal only)."""
    root = Path(root).expanduser().resolve() if Path(root).exists() else Path(root)
    songs = discover(layout, root, split)
    if not songs:
        return []
    setting = hashlib.sha1(f"{INDEX_VERSION}|{root}|{sorted(asdict(config).items())}".encode()).hexdigest()[:8]
    prefix = f"{layout}-{split}-{setting}-"
    cache = _cache_folder(root, cache_dir) / f"{prefix}{_fingerprint(songs)}.json"
    if cache.is_file():
        stored = json.loads(cache.read_text())
    else:
        from tqdm import tqdm

        stored = {}
        hide = None if progress is None else not progress  # None: tqdm shows a bar on terminals only
        for song in tqdm(songs, desc=f"activity index {root.name}/{split}", disable=hide, unit="song"):
            for stem in song.stems:
                audio, rate = read_stem(stem)
                stored[str(stem.paths[0])] = [rate, audio.shape[1], active_starts(audio, rate, config).tolist()]
        with contextlib.suppress(OSError):  # a read-only cache folder only costs recomputation next time
            _write_json(cache, stored)
            for stale in cache.parent.glob(f"{prefix}*.json"):  # indexes of files that have since changed
                if stale != cache:
                    stale.unlink()
    return [(song, [_indexed(stem, stored[str(stem.paths[0])]) for stem in song.stems]) for song in songs]


def _indexed(stem: Stem, entry: list) -> IndexedStem:
    rate, length, starts = entry
    return IndexedStem(stem, int(rate), int(length), np.asarray(starts, np.int64))
