"""Real recorded drums (Hydrogen drum kits) and acoustic-guitar strums (belofilms_GuitarStrums).

Kits are read from their ``drumkit.xml`` (instrument names -> roles, velocity layers); each split gets its
own kits. The guitar strums are one recorded guitar (4 dynamics layers of each chord and direction), so
they are a training-only instrument: validation and test songs have no strummed guitar.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from apollo_restore.audio import read_audio, resample
from apollo_restore.errors import ApolloError

KIT_DIRS = (Path("/usr/share/hydrogen/data/drumkits"), Path.home() / ".hydrogen/data/drumkits")
STRUMS = "belofilms_GuitarStrums"
#: kits per split (different kits; the three Millo kits may share recordings, so they stay together)
SPLIT_KITS = {
    "train": ("ColomboAcousticDrumkit", "BJA_Pacific", "ElectricEmpireKit", "ForzeeStereo", "VariBreaks",
              "rumpf_kit_z01_h2"),
    "valid": ("Millo-Drums_v.1", "Millo_MultiLayered2", "Millo_MultiLayered3"),
    "test": ("The Black Pearl 1.0", "Audiophob", "HardElectro1"),
}
#: the one guitar bank belongs to training only
STRUM_SPLITS = ("train",)
ROLES = (("kick", r"kick|bass ?drum|bassdrum"), ("snare", r"snare(?!.*roll)"),
         ("hat_open", r"(hat|hh).*\bop|open.*(hat|hh)"), ("hat_closed", r"(hat|hh).*(closed|\bcl\b)|closed"),
         ("ride", r"ride(?!.*(bell|cup))"), ("crash", r"crash|china"), ("tom", r"\btom"))
NOTE_NAMES = {"C": 0, "Csharp": 1, "Dflat": 1, "D": 2, "Dsharp": 3, "Eflat": 3, "E": 4, "F": 5, "Fsharp": 6,
              "Gflat": 6, "G": 7, "Gsharp": 8, "Aflat": 8, "A": 9, "Asharp": 10, "Bflat": 10, "B": 11}
SAMPLE_RATE = 44100


@dataclass
class Layer:
    """One recorded hit and the velocity range (0-1) it answers."""

    audio: np.ndarray  # [2, n] at SAMPLE_RATE
    low: float
    high: float


@dataclass
class Kit:
    name: str
    license: str
    roles: dict[str, list[list[Layer]]]  # role -> instruments -> layers


def kit_folder(name: str) -> Path:
    for base in KIT_DIRS:
        if (base / name / "drumkit.xml").is_file() or (base / name).is_dir():
            return base / name
    raise ApolloError(f"Hydrogen kit {name!r} not found (run scripts/install-data-deps.sh)")


def available_kits(split: str) -> list[str]:
    """The split's kits that are installed."""
    names = []
    for name in SPLIT_KITS[split]:
        try:
            kit_folder(name)
            names.append(name)
        except ApolloError:
            continue
    return names


def _stereo(path: Path) -> np.ndarray:
    audio, rate = read_audio(path)
    audio = np.repeat(audio, 2, axis=0) if audio.shape[0] == 1 else audio[:2]
    return resample(audio, rate, SAMPLE_RATE)


def _role(name: str) -> str | None:
    name = name.lower()
    return next((role for role, pattern in ROLES if re.search(pattern, name)), None)


@lru_cache(maxsize=4)
def load_kit(name: str) -> Kit:
    """Parse a Hydrogen ``drumkit.xml`` (old and new formats) and load its samples at 44.1 kHz stereo."""
    folder = kit_folder(name)
    root = ET.parse(folder / "drumkit.xml").getroot()
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    roles: dict[str, list[list[Layer]]] = {}
    for instrument in root.iter(f"{ns}instrument"):
        role = _role(instrument.findtext(f"{ns}name") or "")
        if role is None:
            continue
        layers = []
        for layer in instrument.iter(f"{ns}layer"):
            path = folder / (layer.findtext(f"{ns}filename") or "")
            if path.is_file():
                layers.append(Layer(_stereo(path), float(layer.findtext(f"{ns}min") or 0),
                                    float(layer.findtext(f"{ns}max") or 1)))
        direct = folder / (instrument.findtext(f"{ns}filename") or "")
        if not layers and direct.is_file():
            layers.append(Layer(_stereo(direct), 0.0, 1.0))
        if layers:
            roles.setdefault(role, []).append(layers)
    if not {"kick", "snare"} <= roles.keys():
        raise ApolloError(f"Hydrogen kit {name!r} has no kick and snare")
    return Kit(name, root.findtext(f"{ns}license") or "see the kit's drumkit.xml", roles)


def pick_layer(layers: list[Layer], velocity: float, rng: np.random.Generator) -> Layer:
    """The layer whose velocity range holds ``velocity`` (0-1); random among ties (round robin)."""
    fitting = [layer for layer in layers if layer.low <= velocity <= layer.high] or layers
    return fitting[rng.integers(len(fitting))]


@lru_cache(maxsize=1)
def strum_index() -> dict[tuple[int, str], dict[str, list[Path]]]:
    """``(root pitch class, quality) -> {"": [...], "DOWN": [...], "UP": [...]}``, each list ordered from
    the loudest dynamics layer (file suffix ``_00``) to the softest (``_03``); quality is "major", "minor" or
    "m7b5"."""
    folder = kit_folder(STRUMS)
    index: dict[tuple[int, str], dict[str, list[Path]]] = {}
    pattern = re.compile(r"^([A-G](?:sharp|flat)?) ?(major|minor|minro)(7b5)?(?:_(down|up))?_(\d\d)", re.I)
    for path in sorted(folder.glob("*.flac")):
        match = pattern.match(path.name)
        if not match:
            continue
        note, kind, seventh, direction = match.group(1), match.group(2).lower(), match.group(3), match.group(4)
        quality = "m7b5" if seventh else ("major" if kind == "major" else "minor")
        entry = index.setdefault((NOTE_NAMES[note], quality), {"": [], "DOWN": [], "UP": []})
        entry[(direction or "").upper()].append(path)
    return index


@lru_cache(maxsize=512)
def strum_audio(path: Path, semitones: int) -> np.ndarray:
    """A strum at 44.1 kHz stereo, pitch-shifted by ``semitones`` (by resampling; |shift| <= 2)."""
    audio = _stereo(path)
    if semitones:
        audio = resample(audio, round(SAMPLE_RATE * 2 ** (semitones / 12)), SAMPLE_RATE)
    return audio
