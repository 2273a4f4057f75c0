"""Real scores from the music21 corpus: catalogue, score-level splits, note extraction with a cache.

A parsed score becomes :class:`ScoreNotes`: per part an array ``[n, 3]`` of (onset, duration, MIDI pitch)
in quarter notes, the bar length in quarter notes and the printed tempo if any. Parsing is slow (up to
seconds per file), so extracted notes are cached as JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apollo_restore.data.layouts import hash_split
from apollo_restore.errors import ApolloError
from apollo_restore.extras import missing_extra
from apollo_restore.files import atomic_write_text

#: genre -> corpus globs (relative to music21/corpus) and the share of songs drawn from it
GENRES: dict[str, tuple[tuple[str, ...], float]] = {
    "chorale": (("bach/bwv*.mxl",), 0.25),
    "renaissance": (("palestrina/*.krn", "josquin/*.abc"), 0.2),
    "madrigal": (("monteverdi/*.mxl",), 0.1),
    "quartet": (("haydn/*/*.mxl", "mozart/*/*.mxl", "beethoven/opus18no*/*.mxl"), 0.1),
    "folk": (("ryansMammoth/*.abc",), 0.35),
}
SCORE_LICENSE = ("music21 corpus encoding (public-domain composition; encodings distributed with music21 "
                 "under the terms in music21/corpus/license.txt)")
#: score-level splits: `layouts.hash_split` of the corpus path (10 % test, 10 % valid, 80 % train)


@dataclass
class ScoreNotes:
    """Notes of one score: ``parts`` is a list of ``[n, 3]`` (onset ql, duration ql, MIDI pitch) arrays."""

    source: str
    genre: str
    parts: list[np.ndarray]
    part_names: list[str]
    bar_quarters: float
    tempo_qpm: float | None

    @property
    def quarters(self) -> float:
        return max(float((p[:, 0] + p[:, 1]).max()) for p in self.parts)


def corpus_root() -> Path:
    try:
        import music21
    except ImportError as error:
        raise ApolloError(missing_extra(error) or f"music21 cannot be imported ({error})") from None
    return Path(music21.__file__).parent / "corpus"


def catalogue(split: str) -> dict[str, list[str]]:
    """Corpus-relative score paths of ``split``, by genre (sorted)."""
    root = corpus_root()
    found = {}
    for genre, (patterns, _) in GENRES.items():
        paths = sorted({str(p.relative_to(root)) for pattern in patterns for p in root.glob(pattern)})
        found[genre] = [p for p in paths if hash_split(p) == split]  # stable across machines
    return found


def _extract(source: str, genre: str) -> ScoreNotes:
    from music21 import converter, meter, tempo

    score = converter.parse(str(corpus_root() / source))
    if hasattr(score, "scores"):  # an Opus: take its first score
        score = score.scores[0]
    parts, names = [], []
    for part in score.parts:
        rows = []
        for element in part.stripTies().flatten().notes:
            duration = float(element.quarterLength)
            if duration <= 0:
                continue  # grace notes
            pitches = getattr(element, "pitches", ())
            rows += [(float(element.offset), duration, float(p.midi)) for p in pitches]
        if len(rows) >= 4:
            parts.append(np.asarray(sorted(rows), np.float64))
            names.append(str(part.partName or f"part{len(names)}"))
    if not parts:
        raise ApolloError(f"{source}: no pitched parts")
    signature = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
    mark = next(iter(score.recurse().getElementsByClass(tempo.MetronomeMark)), None)
    qpm = float(mark.getQuarterBPM()) if mark is not None and mark.number else None
    bar = float(signature.barDuration.quarterLength) if signature is not None else 4.0
    return ScoreNotes(source, genre, parts, names, bar, qpm)


def load_score(source: str, genre: str, cache_dir: Path) -> ScoreNotes:
    """Notes of a corpus score, from ``cache_dir`` when extracted before."""
    cache = cache_dir / (hashlib.sha1(source.encode()).hexdigest()[:16] + ".json")
    if cache.is_file():
        data = json.loads(cache.read_text())
        return ScoreNotes(data["source"], data["genre"], [np.asarray(p, np.float64) for p in data["parts"]],
                          data["part_names"], data["bar_quarters"], data["tempo_qpm"])
    notes = _extract(source, genre)
    atomic_write_text(cache, json.dumps({
        "source": notes.source, "genre": notes.genre, "parts": [p.tolist() for p in notes.parts],
        "part_names": notes.part_names, "bar_quarters": notes.bar_quarters, "tempo_qpm": notes.tempo_qpm}))
    return notes
