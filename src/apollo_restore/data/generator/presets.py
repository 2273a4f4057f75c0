"""How much high band each SoundFont preset carries, measured once by rendering a test phrase.

Most General MIDI presets are sampled at low rates or low-passed: their spectrum ends at 5-14 kHz. The
generator uses a preset as a dry source only when it is full-band (:data:`FULL_BAND`), and a band-limited
one only behind saturation, which writes real harmonics above its edge. The table is cached per
SoundFont (keyed by file name, size and mtime) as JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from apollo_restore.data.stats import edge_hz, share_above_db

SAMPLE_RATE = 44100
#: (onset s, duration s, MIDI pitch, velocity): single notes over five octaves, then a chord
TEST_PHRASE = np.array([(0.0, 0.7, 40, 110), (1.0, 0.7, 52, 110), (2.0, 0.7, 64, 110), (3.0, 0.7, 76, 110),
                        (4.0, 0.7, 88, 110), (5.0, 1.0, 60, 90), (5.0, 1.0, 64, 90), (5.0, 1.0, 67, 90)])
PHRASE_SECONDS = 7.5
#: full-band: within 60 dB of the spectral peak up to 16 kHz, and at least -60 dB of the energy above it
FULL_BAND_EDGE_HZ = 16000.0
FULL_BAND_SHARE_DB = -60.0


@dataclass(frozen=True)
class PresetBand:
    """One preset's measured bandwidth."""

    program: int
    edge_hz: float
    above16k_db: float

    @property
    def full_band(self) -> bool:
        return self.edge_hz >= FULL_BAND_EDGE_HZ and self.above16k_db >= FULL_BAND_SHARE_DB


def measure_preset(renderer, program: int) -> PresetBand | None:
    """Render TEST_PHRASE with GM ``program`` (bank 0); None when the SoundFont has no such preset or it is
    silent."""
    if not renderer.has_preset(program):
        return None
    audio = renderer.render(program, TEST_PHRASE, PHRASE_SECONDS)
    if float(np.abs(audio).max()) <= 0:
        return None
    return PresetBand(program, round(edge_hz(audio, SAMPLE_RATE), 1), round(share_above_db(audio, SAMPLE_RATE), 2))


def measure_presets(renderer) -> dict[int, PresetBand]:
    """:func:`measure_preset` of every GM program the renderer's SoundFont holds."""
    bands = (measure_preset(renderer, program) for program in range(128))
    return {band.program: band for band in bands if band is not None}


def preset_table(renderer, soundfont: Path, cache_dir: Path) -> dict[int, PresetBand]:
    """The bandwidth table of ``soundfont`` (rendered with ``renderer``), from ``cache_dir`` when measured
    before for the same file."""
    stat = soundfont.stat()
    cache = cache_dir / f"presets-{soundfont.stem}-{stat.st_size}-{int(stat.st_mtime)}.json"
    if cache.is_file():
        return {int(k): PresetBand(**v) for k, v in json.loads(cache.read_text()).items()}
    table = measure_presets(renderer)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".presets.")
    with os.fdopen(fd, "w") as handle:
        json.dump({str(k): asdict(v) for k, v in table.items()}, handle, indent=1)
    os.replace(tmp, cache)
    return table
