"""Where the stems of a dataset live: MUSDB18-HQ, MoisesDB, and a generic folder of songs.

Each layout turns ``(root, split)`` into a list of :class:`Song`, each with its stems (one family each; a
stem may be several files that are summed, as MoisesDB stores e.g. two guitar tracks) and, when the dataset
has one, the real mixture file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from apollo_restore.errors import ApolloError

LAYOUTS = ("musdb", "moisesdb", "folder")
SPLITS = ("train", "valid", "test")
AUDIO_SUFFIXES = (".wav", ".flac")
MUSDB_STEMS = ("vocals", "drums", "bass", "other")
#: the official MUSDB18 validation tracks (held out of ``train``)
MUSDB_VALID = frozenset({
    "Actions - One Minute Smile", "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies", "Patrick Talbot - A Reason To Leave", "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero", "Fergessen - Nos Palpitants", "Leaf - Summerghost",
    "Skelpolu - Human Mistakes", "Young Griffo - Pennies", "ANiMAL - Rockshow", "James May - On The Line",
    "Meaxic - Take A Step", "Traffic Experiment - Sirens",
})
#: layouts without split folders assign songs by a hash of their name: 10 % test, 10 % valid, 80 % train
HASH_SPLIT = (("test", 0.1), ("valid", 0.2), ("train", 1.0))
VOCAL_WORDS = ("vocal", "voice", "choir", "sing", "vox")


@dataclass(frozen=True)
class Stem:
    """One source of one song: ``family`` (e.g. "vocals", "drums") and the files summed to make it."""

    song: str
    family: str
    paths: tuple[Path, ...]

    @property
    def is_vocal(self) -> bool:
        return is_vocal_family(self.family)


@dataclass(frozen=True)
class Song:
    """A song's stems and, if the dataset ships one, its mixture file (else the mixture is the stem sum)."""

    name: str
    stems: tuple[Stem, ...]
    mixture: Path | None = None


def is_vocal_family(family: str) -> bool:
    """Whether a stem family name denotes singing voice."""
    family = family.lower()
    return any(word in family for word in VOCAL_WORDS)


def hash_split(name: str) -> str:
    """Deterministic split of a name (a song of a layout without split folders, a score of the generator):
    the same on every machine and run."""
    value = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return next(split for split, upper in HASH_SPLIT if value < upper)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ApolloError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def musdb_songs(root: Path, split: str) -> list[Song]:
    """MUSDB18-HQ: ``root/{train,test}/<song>/{mixture,vocals,drums,bass,other}.wav``; ``valid`` is the
    official 14-track validation subset of ``train``."""
    folder = root / ("test" if split == "test" else "train")
    if not folder.is_dir():
        raise ApolloError(f"{root}: not a MUSDB18-HQ folder (no {folder.name}/ inside)")
    songs = []
    for song_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if split != "test" and (song_dir.name in MUSDB_VALID) != (split == "valid"):
            continue
        files = {p.stem.lower(): p for p in _audio_files(song_dir)}
        stems = tuple(Stem(song_dir.name, name, (files[name],)) for name in MUSDB_STEMS if name in files)
        if stems:
            songs.append(Song(song_dir.name, stems, files.get("mixture")))
    return songs


def moisesdb_songs(root: Path, split: str) -> list[Song]:
    """MoisesDB: ``root/<song id>/<family>/<track id>.wav`` (a ``data.json`` beside the family folders), one
    level of nesting allowed (``root/moisesdb_v0.1/...``); split by a hash of the song id."""
    song_dirs = sorted({p.parent for p in [*root.glob("*/data.json"), *root.glob("*/*/data.json")]})
    if not song_dirs:
        raise ApolloError(f"{root}: not a MoisesDB folder (no <song>/data.json inside)")
    songs = []
    for song_dir in song_dirs:
        if hash_split(song_dir.name) != split:
            continue
        stems = []
        for family_dir in sorted(p for p in song_dir.iterdir() if p.is_dir()):
            files = _audio_files(family_dir)
            if files:
                stems.append(Stem(song_dir.name, family_dir.name.lower(), tuple(files)))
        if stems:
            songs.append(Song(song_dir.name, tuple(stems)))
    return songs


def _folder_song(song_dir: Path) -> Song | None:
    """One song folder: every audio file but ``mixture.*`` is a stem; ``meta.json`` may name families."""
    meta_path = song_dir / "meta.json"
    families: dict[str, str] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise ApolloError(f"{meta_path}: unreadable song metadata ({error})") from None
        families = {Path(s["file"]).stem: s["family"] for s in meta.get("stems", []) if "file" in s}
    mixture, stems = None, []
    for path in _audio_files(song_dir):
        if path.stem.lower() == "mixture":
            mixture = path
        else:
            stems.append(Stem(song_dir.name, families.get(path.stem, path.stem.lower()), (path,)))
    return Song(song_dir.name, tuple(stems), mixture) if stems else None


def folder_songs(root: Path, split: str) -> list[Song]:
    """Generic: ``root/<split>/<song>/<stem>.{wav,flac}`` (optional ``mixture.*`` and ``meta.json``), or
    ``root/<song>/...`` without split folders, then split by a hash of the song name."""
    has_splits = any((root / s).is_dir() for s in SPLITS)
    base = root / split if has_splits else root
    if not base.is_dir():
        return []
    songs = []
    for song_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not has_splits and hash_split(song_dir.name) != split:
            continue
        song = _folder_song(song_dir)
        if song is not None:
            songs.append(song)
    return songs


def discover(layout: str, root: str | Path, split: str) -> list[Song]:
    """The songs of ``split`` in a dataset ``root`` of the given ``layout``."""
    _check_split(split)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ApolloError(f"{root}: dataset folder does not exist")
    readers = {"musdb": musdb_songs, "moisesdb": moisesdb_songs, "folder": folder_songs}
    if layout not in readers:
        raise ApolloError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return readers[layout](root, split)
