"""Small synthetic multi-stem datasets in every layout, for tests and smoke runs (not for training).

Stems are simple but full-band signals: a vibrato harmonic "voice", decaying noise-burst "drums", a sine
"bass", a chord "other"; each has a silent stretch so the activity detector has something to drop.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from apollo_restore.audio import write_audio
from apollo_restore.data.layouts import MUSDB_STEMS

FAMILIES = ("vocals", "drums", "bass", "other")
#: one period of a 23-harmonic sawtooth (full-band at the pitches used)
WAVETABLE = (np.sin(2 * np.pi * np.outer(np.arange(1, 24), np.arange(4096) / 4096))
             / np.arange(1, 24)[:, None]).sum(axis=0)


def synth_stem(family: str, seconds: float, sample_rate: int, rng: np.random.Generator,
               silent: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A stereo stem ``[2, samples]`` of ``family`` with zeros between ``silent`` seconds."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    f0 = float(rng.uniform(110, 440))
    if family == "drums":
        beat = (t * 4.0) % 1.0
        mono = rng.standard_normal(t.size) * np.exp(-beat * 5.0) * 0.5
    elif family == "bass":
        mono = 0.5 * np.sin(2 * np.pi * f0 / 4 * t)
    else:
        vibrato = 1 + (0.01 if family == "vocals" else 0.0) * np.sin(2 * np.pi * 5.5 * t)
        ratios = np.array([1.0, 1.25, 1.5]) if family == "other" else np.ones(1)
        cycles = f0 * np.cumsum(vibrato) / sample_rate * ratios[:, None]  # [voices, samples]
        mono = WAVETABLE[(cycles * WAVETABLE.size).astype(np.int64) % WAVETABLE.size].sum(axis=0) * 0.1
    mono[round(silent[0] * sample_rate):round(silent[1] * sample_rate)] = 0.0
    pan = float(rng.uniform(0.2, 0.8))
    return (np.stack([np.sqrt(1 - pan) * mono, np.sqrt(pan) * mono]) * 0.8).astype(np.float32)


def write_synthetic_dataset(root: str | Path, layout: str, n_songs: int = 4, seconds: float = 8.0,
                            sample_rate: int = 44100, seed: int = 0,
                            splits: tuple[str, ...] = ("train", "test")) -> Path:
    """Write ``n_songs`` songs per split in ``layout`` ("musdb", "moisesdb" or "folder") under ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    silent = (seconds * 0.5, seconds * 0.5 + 3.5)
    for split in splits:
        for k in range(n_songs):
            name = f"{split}-song-{k:02d}"
            stems = {f: synth_stem(f, seconds, sample_rate, rng, silent) for f in FAMILIES}
            if layout == "musdb":
                folder = root / ("test" if split == "test" else "train") / name
                for family in MUSDB_STEMS:
                    write_audio(folder / f"{family}.wav", stems[family], sample_rate, "PCM_16")
                write_audio(folder / "mixture.wav", sum(stems.values()), sample_rate, "PCM_16")
            elif layout == "moisesdb":
                folder = root / name
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "data.json").write_text(json.dumps({"song": name, "stems": list(stems)}))
                for family, audio in stems.items():
                    halves = (audio * 0.5, audio * 0.5)  # MoisesDB stores several tracks per family
                    for i, half in enumerate(halves):
                        write_audio(folder / family / f"track{i}.wav", half, sample_rate, "PCM_16")
            else:
                folder = root / split / name
                for family, audio in stems.items():
                    write_audio(folder / f"{family}.flac", audio, sample_rate)
                meta = {"stems": [{"file": f"{f}.flac", "family": f} for f in stems]}
                (folder / "meta.json").write_text(json.dumps(meta))
    return root
