"""Pre-rendered validation / test sets: clean + degraded FLAC pairs and a ``manifest.jsonl``.

Layout of a set folder ``TESTSET``::

    manifest.jsonl       one JSON object per example (paths relative to TESTSET):
                         {"id", "clean": "clean/<id>.flac", "degraded": "degraded/<id>.flac", "codec",
                          "bitrate", "category", "sample_rate", ...extra metadata}
    clean/<id>.flac      24-bit stereo 44.1 kHz
    degraded/<id>.flac

:func:`build_testset` cuts clips from a stem dataset: they cycle through the Table II categories the data
can produce, ``n_per_bitrate`` per bitrate (categories are forced, so every clip is a mix of stems, not a
real song mixture). :func:`build_mixture_testset` codes every file of a folder of finished recordings
(no stems) at every bitrate, with the category from a ``manifest.csv`` beside them or ``mixture``, and a
``rank`` per example that spreads small subsets
(:func:`apollo_restore.evaluate.sources.subset`) over the sources.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from apollo_restore.audio import INPUT_EXTENSIONS, read_audio, resample, write_audio
from apollo_restore.data.mixing import SILENCE_PEAK, MixConfig, MixtureDataset
from apollo_restore.degrade import DegradeConfig, degrade_with_info
from apollo_restore.errors import ApolloError
from apollo_restore.files import atomic_write_text

MANIFEST = "manifest.jsonl"
CORE_FIELDS = ("id", "clean", "degraded", "codec", "bitrate", "category")
#: a folder of recordings may describe its files here (column ``file``; optional ``category``)
SOURCE_MANIFEST = "manifest.csv"
MIXTURE_CATEGORY = "mixture"


@dataclass
class TestExample:
    """One manifest line, with absolute paths."""

    __test__ = False  # not a pytest class

    id: str
    clean: Path
    degraded: Path
    codec: str
    bitrate: int
    category: str
    extra: dict = field(default_factory=dict)


def load_manifest(directory: str | os.PathLike) -> list[TestExample]:
    """Read ``directory/manifest.jsonl``; raises ApolloError if it is missing or malformed."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ApolloError(f"{directory}: no {MANIFEST} (not a pre-rendered set)")
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            extra = {k: v for k, v in record.items() if k not in CORE_FIELDS}
            examples.append(TestExample(str(record["id"]), directory / record["clean"],
                                        directory / record["degraded"], str(record["codec"]),
                                        int(record["bitrate"]), str(record["category"]), extra))
        except (ValueError, KeyError, TypeError) as error:
            raise ApolloError(f"{path}:{number}: malformed manifest line ({error})") from None
    if not examples:
        raise ApolloError(f"{path}: manifest is empty")
    return examples


def build_testset(config: MixConfig, out_dir: str | os.PathLike, n_per_bitrate: int, seed: int,
                  split: str = "test", progress: bool = False) -> list[TestExample]:
    """Render ``n_per_bitrate`` clips per bitrate of ``config.degrade`` from ``split`` into ``out_dir``.

    Example ``j`` of the ``b``-th bitrate uses ``default_rng([seed, bitrate, j])`` and the ``(j + b)``-th
    available category (cyclically), so a set is reproducible and balanced; existing clip files are
    rewritten, the manifest is replaced atomically at the end.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    dataset = MixtureDataset(config, split=split, epoch_size=1, seed=seed)
    categories = dataset.available_categories()
    options = config.degrade.options()
    lines = []
    jobs = [(b, degradation, j) for b, degradation in enumerate(options) for j in range(n_per_bitrate)]
    for b, degradation, j in tqdm(jobs, desc=f"rendering {out_dir.name}", disable=not progress, unit="clip"):
        rng = np.random.default_rng([seed, int(degradation.bitrate or 0), int(degradation.vbr_quality or 0),
                                     int(degradation.cutoff_hz or 0), j])
        example = dataset.render(rng, degradation=degradation, category=categories[(j + b) % len(categories)])
        clip_id = f"{degradation.label}-{j:04d}"
        record = {"id": clip_id, "clean": f"clean/{clip_id}.flac", "degraded": f"degraded/{clip_id}.flac",
                  "codec": degradation.codec, "bitrate": example.bitrate, "category": example.category,
                  "sample_rate": config.sample_rate, "split": split, "seed": seed,
                  "real_mixture": example.real_mixture, "degradation": degradation.label, "stems": example.stems}
        write_audio(out_dir / record["clean"], example.clean, config.sample_rate)
        write_audio(out_dir / record["degraded"], example.degraded, config.sample_rate)
        lines.append(json.dumps(record))
    return _write_manifest(out_dir, lines)


def _write_manifest(out_dir: Path, lines: list[str]) -> list[TestExample]:
    atomic_write_text(out_dir / MANIFEST, "\n".join(lines) + "\n")
    return load_manifest(out_dir)


def read_source_manifest(folder: Path) -> dict[str, dict[str, str]]:
    """Rows of ``folder/manifest.csv`` keyed by their ``file`` column ({} when there is none)."""
    from apollo_restore.evaluate.sources import read_csv_rows

    return read_csv_rows(folder / SOURCE_MANIFEST, "file", "category and any description")


def source_group(name: str) -> str:
    """Which source a recording came from, by its name's first word (``visqol_glock`` -> ``visqol``)."""
    return re.split(r"[_\-. ]", name, maxsplit=1)[0].lower() or name


def spread_order(names: list[str], turn: int = 0, turns: int = 1) -> list[str]:
    """``names`` interleaved over their :func:`source_group`, so any prefix of the result covers as many
    sources as it can. Turn ``t`` of ``turns`` starts at the ``t``-th group (sorted) and ``t / turns`` of the
    way into each group's sorted names, so the prefixes of different turns hold different names."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(source_group(name), []).append(name)
    keys = sorted(groups)
    columns = []
    for key in keys[turn % len(keys):] + keys[: turn % len(keys)] if keys else []:
        items = groups[key]
        start = (turn * math.ceil(len(items) / max(turns, 1))) % len(items)
        columns.append(items[start:] + items[:start])
    return [column[i] for i in range(max(map(len, columns), default=0)) for column in columns if i < len(column)]


def build_mixture_testset(source_dir: str | os.PathLike, out_dir: str | os.PathLike, degrade: DegradeConfig,
                          sample_rate: int = 44100, progress: bool = False) -> list[TestExample]:
    """Code every recording in ``source_dir`` (not recursive) with each option of ``degrade``.

    Each pair is the whole file at ``sample_rate`` with its own channels. One clean file per recording
    (``clean/<stem>.flac``) serves every bitrate: it and its coded versions are divided by the largest of
    their peaks, so nothing clips. The id is ``<degradation>-<file stem>``. The
    ``rank`` of a file at the ``b``-th bitrate is its place in turn ``b`` of :func:`spread_order`, so the
    lowest ranks of each bitrate (``subset(per_cell=n)``) are files from different sources, and mostly
    different files at different bitrates. The manifest is replaced atomically at the end.
    """
    from tqdm import tqdm

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise ApolloError(f"{source_dir}: not a folder of recordings")
    files = sorted(p for p in source_dir.iterdir() if p.is_file() and p.suffix.lower() in INPUT_EXTENSIONS)
    if not files:
        raise ApolloError(f"{source_dir}: no audio files ({', '.join(INPUT_EXTENSIONS)})")
    described = read_source_manifest(source_dir)
    options = degrade.options()
    ranks = [{name: k for k, name in enumerate(spread_order([p.stem for p in files], b, len(options)))}
             for b in range(len(options))]
    lines: list[tuple[int, str, str]] = []
    for path in tqdm(files, desc=f"rendering {out_dir.name}", disable=not progress, unit="file"):
        audio, rate = read_audio(path)
        audio = resample(audio, rate, sample_rate)
        if float(np.abs(audio).max()) <= SILENCE_PEAK:
            raise ApolloError(f"{path}: silent (peak below {SILENCE_PEAK:g}); remove it from the folder")
        row = described.get(path.name, {})
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem)
        coded = [degrade_with_info(audio, sample_rate, degradation) for degradation in options]
        peak = max(float(np.abs(audio).max()), *(float(np.abs(d).max()) for d, _ in coded))
        write_audio(out_dir / "clean" / f"{name}.flac", audio / peak, sample_rate)
        for b, (degradation, (degraded, kbps)) in enumerate(zip(options, coded, strict=True)):
            clip_id = f"{degradation.label}-{name}"
            bitrate = kbps if degradation.vbr_quality is not None else int(degradation.bitrate or 0)
            record = {"id": clip_id, "clean": f"clean/{name}.flac", "degraded": f"degraded/{clip_id}.flac",
                      "codec": degradation.codec, "bitrate": 0 if degradation.codec == "lowpass" else bitrate,
                      "category": row.get("category") or MIXTURE_CATEGORY, "sample_rate": sample_rate,
                      "degradation": degradation.label, "source": path.name, "group": source_group(path.stem),
                      "rank": ranks[b][path.stem], "seconds": audio.shape[1] / sample_rate,
                      "channels": audio.shape[0], "source_info": row}
            write_audio(out_dir / record["degraded"], degraded / peak, sample_rate)
            lines.append((b, clip_id, json.dumps(record)))
    return _write_manifest(out_dir, [line for *_, line in sorted(lines)])


class PairDataset(Dataset):
    """A pre-rendered set as a dataset of ``{"id", "clean", "degraded", "bitrate", "category"}`` with
    float32 tensors ``[channels, samples]``; ``per_cell`` / ``ids`` keep a fixed subset
    (:func:`apollo_restore.evaluate.sources.subset`)."""

    def __init__(self, directory: str | os.PathLike, per_cell: int | None = None,
                 ids: list[str] | tuple[str, ...] | None = None):
        from apollo_restore.evaluate.sources import subset

        self.examples = subset(load_manifest(directory), per_cell, ids)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        clean, _ = read_audio(example.clean)
        degraded, _ = read_audio(example.degraded)
        return {"id": example.id, "clean": torch.from_numpy(clean), "degraded": torch.from_numpy(degraded),
                "bitrate": example.bitrate, "category": example.category}
