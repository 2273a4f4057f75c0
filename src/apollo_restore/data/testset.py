"""Pre-rendered validation / test sets: clean + degraded FLAC pairs and a ``manifest.jsonl``.

Layout of a set folder ``TESTSET``::

    manifest.jsonl       one JSON object per example (paths relative to TESTSET):
                         {"id", "clean": "clean/<id>.flac", "degraded": "degraded/<id>.flac", "codec",
                          "bitrate", "category", "sample_rate", ...extra metadata}
    clean/<id>.flac      24-bit stereo 44.1 kHz
    degraded/<id>.flac

Examples cycle through the Table II categories the data can produce, ``n_per_bitrate`` per bitrate
(categories are forced, so every clip is a mix of stems, not a real song mixture).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from apollo_restore.audio import read_audio, write_audio
from apollo_restore.data.mixing import MixConfig, MixtureDataset
from apollo_restore.errors import ApolloError

MANIFEST = "manifest.jsonl"
CORE_FIELDS = ("id", "clean", "degraded", "codec", "bitrate", "category")


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
    jobs = [(b, spec, j) for b, spec in enumerate(options) for j in range(n_per_bitrate)]
    for b, spec, j in tqdm(jobs, desc=f"rendering {out_dir.name}", disable=not progress, unit="clip"):
        rng = np.random.default_rng([seed, int(spec.bitrate or 0), int(spec.vbr_quality or 0),
                                     int(spec.cutoff_hz or 0), j])
        example = dataset.render(rng, degradation=spec, category=categories[(j + b) % len(categories)])
        clip_id = f"{spec.label}-{j:04d}"
        record = {"id": clip_id, "clean": f"clean/{clip_id}.flac", "degraded": f"degraded/{clip_id}.flac",
                  "codec": spec.codec, "bitrate": example.bitrate, "category": example.category,
                  "sample_rate": config.sample_rate, "split": split, "seed": seed,
                  "real_mixture": example.real_mixture, "degradation": spec.label, "stems": example.stems}
        write_audio(out_dir / record["clean"], example.clean, config.sample_rate)
        write_audio(out_dir / record["degraded"], example.degraded, config.sample_rate)
        lines.append(json.dumps(record))
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=out_dir)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(tmp, out_dir / MANIFEST)
    return load_manifest(out_dir)


class PairDataset(Dataset):
    """A pre-rendered set as a dataset of ``{"id", "clean", "degraded", "bitrate", "category"}`` with
    float32 tensors ``[channels, samples]``."""

    def __init__(self, directory: str | os.PathLike):
        self.examples = load_manifest(directory)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        clean, _ = read_audio(example.clean)
        degraded, _ = read_audio(example.degraded)
        return {"id": example.id, "clean": torch.from_numpy(clean), "degraded": torch.from_numpy(degraded),
                "bitrate": example.bitrate, "category": example.category}
