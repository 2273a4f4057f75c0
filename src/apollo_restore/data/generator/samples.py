"""Real recorded drums, percussion loops and acoustic-guitar strums.

Drum kits come from three Debian packages: Hydrogen kits (``drumkit.xml``: instrument names -> roles,
velocity layers), the AVL drum kits (``avldrums.lv2-soundfont``, GM-mapped SoundFonts, rendered note by
note through FluidSynth into velocity layers) and the Sonic Pi one-shots (``sonic-pi-samples``, CC0 per
``debian/copyright``), assembled into an electronic kit by file name. Each split gets its own kits
(:data:`SPLIT_KITS`; the AVL Black Pearl shares its recordings with Hydrogen's, so both are test kits).
Sonic Pi loops (:func:`loops`) are training-only; the loops that are in the real-music evaluation set
(and the Amen break, which ``loop_amen_full`` contains) are never used. The guitar strums are one recorded
guitar (4 dynamics layers of each chord and direction), so they too are a training-only instrument.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from apollo_restore.audio import read_audio, resample
from apollo_restore.errors import ApolloError

KIT_DIRS = (Path("/usr/share/hydrogen/data/drumkits"), Path.home() / ".hydrogen/data/drumkits")
STRUMS = "belofilms_GuitarStrums"
#: kits per split (different kits; the three Millo kits may share recordings, so they stay together)
SPLIT_KITS = {
    "train": ("ColomboAcousticDrumkit", "BJA_Pacific", "ElectricEmpireKit", "ForzeeStereo", "VariBreaks",
              "rumpf_kit_z01_h2", "avl:Red_Zeppelin_4_LV2", "sonicpi:electronic"),
    "valid": ("Millo-Drums_v.1", "Millo_MultiLayered2", "Millo_MultiLayered3"),
    "test": ("The Black Pearl 1.0", "Audiophob", "HardElectro1", "avl:Black_Pearl_4_LV2"),
}
#: kits whose sound suits electronic music (drawn for that style)
ELECTRONIC_KITS = ("ElectricEmpireKit", "VariBreaks", "sonicpi:electronic", "HardElectro1", "Audiophob")
AVL_DIR = Path("/usr/share/sounds/sf2")
#: GM percussion notes of each role (AVL kits follow the GM drum map)
GM_DRUMS = {"kick": (36,), "snare": (38, 40), "hat_closed": (42, 44), "hat_open": (46,), "ride": (51, 59),
            "crash": (49, 57), "tom": (41, 45, 48)}
AVL_VELOCITIES = (35, 65, 95, 127)
SONIC_PI = Path("/usr/share/sonic-pi/samples")
SONIC_PI_COPYRIGHT = Path("/usr/share/doc/sonic-pi-samples/copyright")
#: Sonic Pi one-shots by role (file-name patterns)
SONIC_PI_ROLES = {"kick": r"^(bd_|drum_heavy_kick|drum_bass_|elec_(soft|hollow)_kick)",
                  "snare": r"^(sn_|drum_snare_|elec_(hi_|lo_|mid_|filt_)?snare|perc_snap)",
                  "hat_closed": r"^(drum_cymbal_(closed|pedal)|elec_tick)", "hat_open": r"^drum_cymbal_open",
                  "crash": r"^(drum_splash_|drum_cymbal_hard|elec_cymbal)", "ride": r"^drum_cymbal_soft",
                  "tom": r"^(drum_tom_|elec_fuzz_tom)"}
#: loops of the real-music evaluation set, and the break that one of them holds: never in training data
EVALUATION_LOOPS = frozenset({"loop_amen", "loop_amen_full", "loop_compus", "loop_garzul", "loop_mika",
                              "loop_safari", "loop_tabla"})
#: loop -> beats it spans (from its length at the tempo it was cut to)
LOOP_BEATS = {"loop_breakbeat": 4, "loop_industrial": 2, "loop_electric": 4, "loop_mehackit1": 4,
              "loop_mehackit2": 4, "loop_perc1": 4, "loop_perc2": 4, "loop_weirdo": 8, "loop_3d_printer": 16}
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


@lru_cache(maxsize=1)
def sonic_pi_licenses() -> dict[str, str]:
    """Sample file name -> licence, from the package's ``debian/copyright`` (files it does not list fall
    under the package's default, MIT)."""
    if not SONIC_PI_COPYRIGHT.is_file():
        return {}
    licenses = {}
    for block in SONIC_PI_COPYRIGHT.read_text().split("\n\n"):
        files = re.search(r"^Files:(.*?)(?=^\w+:)", block, re.S | re.M)
        license_ = re.search(r"^License: *(\S+)", block, re.M)
        if files and license_:
            for name in files.group(1).split():
                if name.startswith("etc/samples/"):
                    licenses[name.removeprefix("etc/samples/")] = license_.group(1)
    return licenses


def sample_license(path: Path) -> str:
    return sonic_pi_licenses().get(path.name, "MIT") + " (Debian sonic-pi-samples)"


def loops() -> list[Path]:
    """The Sonic Pi loops usable for training (installed, beats known, not in the evaluation set)."""
    return [SONIC_PI / f"{name}.flac" for name in sorted(LOOP_BEATS)
            if name not in EVALUATION_LOOPS and (SONIC_PI / f"{name}.flac").is_file()]


def kit_folder(name: str) -> Path:
    for base in KIT_DIRS:
        if (base / name / "drumkit.xml").is_file() or (base / name).is_dir():
            return base / name
    raise ApolloError(f"Hydrogen kit {name!r} not found (run scripts/install-data-deps.sh)")


def available_kits(split: str) -> list[str]:
    """The split's kits that are installed."""
    names = []
    for name in SPLIT_KITS[split]:
        if name.startswith("avl:"):
            if (AVL_DIR / f"{name[4:]}.sf2").is_file():
                names.append(name)
        elif name.startswith("sonicpi:"):
            if SONIC_PI.is_dir():
                names.append(name)
        else:
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


def _avl_kit(name: str) -> Kit:
    """An AVL SoundFont kit rendered note by note (GM drum map) into velocity layers."""
    from apollo_restore.data.generator.fluid import FluidRenderer

    renderer = FluidRenderer(AVL_DIR / f"{name}.sf2", SAMPLE_RATE)
    roles: dict[str, list[list[Layer]]] = {}
    bounds = np.linspace(0, 1, len(AVL_VELOCITIES) + 1)
    for role, notes in GM_DRUMS.items():
        for note in notes:
            layers = []
            for k, velocity in enumerate(AVL_VELOCITIES):
                audio = renderer.render_kit(np.array([[0.0, 0.1, note, velocity]]), 3.0)
                if float(np.abs(audio).max()) > 1e-4:
                    cut = np.nonzero(np.abs(audio).max(axis=0) > 1e-4)[0][-1] + 1
                    layers.append(Layer(audio[:, :cut], float(bounds[k]), float(bounds[k + 1])))
            if layers:
                roles.setdefault(role, []).append(layers)
    renderer.close()
    return Kit(name, "CC-BY-SA-3.0, Glen MacArthur (Debian avldrums.lv2-soundfont)", roles)


def _sonic_pi_kit() -> Kit:
    """An electronic kit from the Sonic Pi one-shots, one instrument per file."""
    roles: dict[str, list[list[Layer]]] = {}
    for path in sorted(SONIC_PI.glob("*.flac")):
        role = next((r for r, pattern in SONIC_PI_ROLES.items() if re.search(pattern, path.stem)), None)
        if role is not None:
            roles.setdefault(role, []).append([Layer(_stereo(path), 0.0, 1.0)])
    if not {"kick", "snare"} <= roles.keys():
        raise ApolloError(f"{SONIC_PI}: no kicks and snares (install sonic-pi-samples)")
    return Kit("sonicpi:electronic", "CC0 (Debian sonic-pi-samples, per debian/copyright)", roles)


@cache  # a split has at most 8 kits: keep them all (loading one takes seconds)
def load_kit(name: str) -> Kit:
    """A kit at 44.1 kHz stereo: ``avl:<SoundFont>``, ``sonicpi:electronic`` or a Hydrogen kit (its
    ``drumkit.xml`` parsed, old and new formats)."""
    if name.startswith("avl:"):
        return _avl_kit(name[4:])
    if name.startswith("sonicpi:"):
        return _sonic_pi_kit()
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


@lru_cache(maxsize=16)
def loop_audio(path: Path) -> np.ndarray:
    return _stereo(path)


@lru_cache(maxsize=512)
def strum_audio(path: Path, semitones: int) -> np.ndarray:
    """A strum at 44.1 kHz stereo, pitch-shifted by ``semitones`` (by resampling; |shift| <= 2)."""
    audio = _stereo(path)
    if semitones:
        audio = resample(audio, round(SAMPLE_RATE * 2 ** (semitones / 12)), SAMPLE_RATE)
    return audio
