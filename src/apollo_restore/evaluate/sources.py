"""What to evaluate: a pre-rendered test set (``manifest.jsonl``) or a folder of aligned pairs.

Pairs folder convention (``apollo evaluate --pairs DIR``)::

    DIR/reference/<name>.wav|flac     the clean originals
    DIR/degraded/<name>.<ext>         the codec outputs, sample-aligned with the references (scored as "input")
    DIR/<system>/<name>.<ext>         optional: any other folder holds one system's restored outputs
    DIR/metadata.csv                  optional: columns id, bitrate, category, codec (id = <name>)

Files are matched by name without extension; a system folder may miss some names (those are skipped for it).
Without metadata, bitrate is 0 ("unknown") and category "unknown".
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from apollo_restore.audio import INPUT_EXTENSIONS
from apollo_restore.errors import ApolloError

if TYPE_CHECKING:  # the module imports torch; scoring workers must not
    from apollo_restore.data.testset import TestExample

REFERENCE_DIR = "reference"
DEGRADED_DIR = "degraded"
METADATA_FILE = "metadata.csv"


@dataclass
class EvalSet:
    """Examples (``TestExample``: id, clean, degraded, codec, bitrate, category) plus external systems'
    outputs: ``outputs[system][example id] -> restored file``."""

    examples: list[TestExample]
    outputs: dict[str, dict[str, Path]] = field(default_factory=dict)
    source: str = ""


def _audio_by_name(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in INPUT_EXTENSIONS:
            if path.stem in files:
                raise ApolloError(f"{folder}: two files named {path.stem!r} ({files[path.stem].name}, {path.name})")
            files[path.stem] = path
    return files


def read_csv_rows(path: Path, key: str, columns: str) -> dict[str, dict[str, str]]:
    """Rows of a CSV file keyed by its ``key`` column ({} when the file does not exist); ``columns`` names
    the other columns for the error message."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and key not in rows[0]:
        raise ApolloError(f"{path}: needs a {key!r} column (plus any of {columns})")
    return {row[key]: row for row in rows}


def load_pairs(directory: str | os.PathLike) -> EvalSet:
    """Read a pairs folder (see module docstring)."""
    from apollo_restore.data.testset import TestExample

    directory = Path(directory)
    for sub in (REFERENCE_DIR, DEGRADED_DIR):
        if not (directory / sub).is_dir():
            raise ApolloError(f"{directory}: a pairs folder needs {REFERENCE_DIR}/ and {DEGRADED_DIR}/ subfolders")
    references = _audio_by_name(directory / REFERENCE_DIR)
    degraded = _audio_by_name(directory / DEGRADED_DIR)
    missing = sorted(set(references) ^ set(degraded))
    if missing:
        raise ApolloError(f"{directory}: {len(missing)} name(s) not in both reference/ and degraded/, "
                          f"e.g. {missing[0]!r}")
    if not references:
        raise ApolloError(f"{directory}/{REFERENCE_DIR}: no audio files")
    metadata = read_csv_rows(directory / METADATA_FILE, "id", "bitrate, category, codec")
    examples = []
    for name, ref in references.items():
        meta = metadata.get(name, {})
        try:
            bitrate = int(meta.get("bitrate") or 0)
        except ValueError:
            raise ApolloError(f"{directory / METADATA_FILE}: bitrate of {name!r} is not an integer") from None
        examples.append(TestExample(name, ref, degraded[name], meta.get("codec") or "unknown", bitrate,
                                    meta.get("category") or "unknown"))
    outputs = {}
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name in (REFERENCE_DIR, DEGRADED_DIR):
            continue
        files = {name: path for name, path in _audio_by_name(sub).items() if name in references}
        if files:
            outputs[sub.name] = files
    return EvalSet(examples, outputs, source=str(directory))


def load_testset(directory: str | os.PathLike) -> EvalSet:
    """Read a pre-rendered test set through ``apollo_restore.data.testset.load_manifest``."""
    from apollo_restore.data.testset import load_manifest

    return EvalSet(load_manifest(directory), source=str(directory))


def subset(examples: list[TestExample], per_cell: int | None = None,
           ids: list[str] | tuple[str, ...] | None = None) -> list[TestExample]:
    """A fixed subset: the examples named in ``ids`` (all must exist), then at most ``per_cell`` per
    (bitrate, category) in manifest ``rank`` order, then id; all when both are None. The result keeps the
    input order.

    A real-music set (``build_mixture_testset``) ranks its files so that ``per_cell=n`` takes ``n``
    different recordings at each bitrate, spread over their sources; sets without ranks go by id.
    """
    kept = list(examples)
    if ids is not None:
        wanted = set(ids)
        missing = sorted(wanted - {e.id for e in kept})
        if missing:
            raise ApolloError(f"{len(missing)} requested id(s) not in the set, e.g. {missing[0]!r}")
        kept = [e for e in kept if e.id in wanted]
    if per_cell is None:
        return kept
    counts: dict[tuple[int, str], int] = {}
    chosen = set()
    for example in sorted(kept, key=lambda e: (int(e.extra.get("rank", 0)), e.id)):
        cell = (example.bitrate, example.category)
        if counts.get(cell, 0) < per_cell:
            counts[cell] = counts.get(cell, 0) + 1
            chosen.add(example.id)
    return [e for e in kept if e.id in chosen]


def read_ids(path: str | os.PathLike) -> list[str]:
    """Example ids from a text file, one per line (blank lines and ``#`` comments ignored)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise ApolloError(f"{path}: cannot read the id list ({error.strerror})") from None
    ids = [line.split("#", 1)[0].strip() for line in lines]
    return [i for i in ids if i]
