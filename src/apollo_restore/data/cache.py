"""A pre-rendered pair cache: the paper's on-the-fly training examples (remixed stems or real mixtures, MP3 at a
drawn bitrate, aligned), rendered once into shards, so the trainer reads pairs with no encoder in its loop.

Layout of a cache folder::

    cache.json                 the MixConfig and seed it was rendered with, clip length, shard size, count
    shard-00000.npy            int16 [examples, 2 (clean, degraded), channels, samples], memory-mapped on read
    shard-00000.jsonl          one line per example: bitrate, category, real_mixture, degradation, stems, seed

Example ``k`` is ``MixtureDataset(config, split, seed=seed).render(default_rng([seed, CACHE_EPOCH, k]))``,
the same draw as item ``k`` of the on-the-fly dataset's epoch ``CACHE_EPOCH``, so the cache holds exactly the
distribution of on-the-fly mixing (bitrates, gains, stem counts, levels), quantised to 16 bits. Shards are
written to a temporary name and renamed, and a finished shard is skipped, so rendering resumes.
:class:`PairCacheDataset` serves epoch ``e`` as a seeded permutation of the examples.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from apollo_restore.data.mixing import MixConfig, MixtureDataset
from apollo_restore.errors import ApolloError
from apollo_restore.files import atomic_write, atomic_write_text

CACHE_FILE = "cache.json"
#: the on-the-fly epoch whose items the cache holds
CACHE_EPOCH = 0
FULL_SCALE = 32767.0


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _render_shard(config: MixConfig, split: str, seed: int, first: int, count: int, out_dir: str) -> int:
    """Render examples ``first .. first + count - 1`` into one shard (runs in a worker process)."""
    dataset = MixtureDataset(config, split, epoch_size=first + count, seed=seed)
    pairs = np.zeros((count, 2, 2, config.clip_samples), np.int16)
    lines = []
    for row, k in enumerate(range(first, first + count)):
        example = dataset.render(np.random.default_rng([seed, CACHE_EPOCH, k]))
        for j, audio in enumerate((example.clean, example.degraded)):
            pairs[row, j] = np.round(np.clip(audio, -1.0, 1.0) * FULL_SCALE).astype(np.int16)
        lines.append(json.dumps({"example": k, "bitrate": example.bitrate, "category": example.category,
                                 "real_mixture": example.real_mixture, "degradation": example.degradation.label,
                                 "stems": example.stems}))
    name = _shard_name(first // count)
    folder = Path(out_dir)
    atomic_write_text(folder / f"{name}.jsonl", "\n".join(lines) + "\n")
    atomic_write(folder / f"{name}.npy", lambda tmp: _save(tmp, pairs))
    return count


def _save(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would append ".npy" to the temporary's name
        np.save(handle, array)


def build_cache(config: MixConfig, out_dir: str | os.PathLike, examples: int, seed: int = 0, split: str = "train",
                shard_size: int = 256, jobs: int = 1, progress: bool = False) -> Path:
    """Render ``examples`` training pairs of ``split`` into ``out_dir`` (``examples`` is rounded up to whole
    shards); finished shards are kept, so an interrupted or extended run resumes."""
    from tqdm import tqdm

    if examples < 1 or shard_size < 1:
        raise ApolloError("a cache needs at least one example and a positive shard size")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    description = {"config": _config_dict(config), "split": split, "seed": seed, "shard_size": shard_size,
                   "clip_samples": config.clip_samples, "sample_rate": config.sample_rate}
    meta_path = out_dir / CACHE_FILE
    if meta_path.is_file():
        previous = json.loads(meta_path.read_text())
        if {k: previous.get(k) for k in description} != description:
            raise ApolloError(f"{out_dir} holds a cache of other data or settings; use another folder")
    MixtureDataset(config, split, epoch_size=1, seed=seed)  # builds the activity index once, here; fails early
    shards = -(-examples // shard_size)
    todo = [s for s in range(shards) if not (out_dir / f"{_shard_name(s)}.npy").is_file()]
    with tqdm(total=len(todo) * shard_size, unit="pair", desc=f"caching {out_dir.name}", disable=not progress) as bar:
        if jobs <= 1:
            for s in todo:
                bar.update(_render_shard(config, split, seed, s * shard_size, shard_size, str(out_dir)))
        else:
            import multiprocessing

            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_render_shard, config, split, seed, s * shard_size, shard_size, str(out_dir))
                           for s in todo]
                for future in futures:
                    bar.update(future.result())
    atomic_write_text(meta_path, json.dumps({**description, "examples": shards * shard_size}, indent=1))
    return out_dir


def _config_dict(config: MixConfig) -> dict:
    data = asdict(config)
    for key in ("cache_dir", "pair_cache"):  # where the index lives, or a cache to read, changes no pair
        data.pop(key, None)
    return json.loads(json.dumps(data))


class PairCacheDataset(Dataset):
    """The cached pairs as the training dataset: ``epoch_size`` items per epoch, item ``i`` of epoch ``e``
    is example ``permutation(seed, e)[i mod examples]``; items are the ``MixtureDataset`` dict
    ``{"clean", "degraded": float32 [2, samples], "bitrate", "category"}``."""

    def __init__(self, directory: str | os.PathLike, epoch_size: int, seed: int = 0,
                 expect: MixConfig | None = None):
        self.directory = Path(directory)
        meta_path = self.directory / CACHE_FILE
        if not meta_path.is_file():
            raise ApolloError(f"{self.directory}: no {CACHE_FILE} (not a finished pair cache; apollo make-cache)")
        self.meta = json.loads(meta_path.read_text())
        if expect is not None and (self.meta["clip_samples"], self.meta["sample_rate"]) != (
                expect.clip_samples, expect.sample_rate):
            raise ApolloError(f"{self.directory}: cached clips are {self.meta['clip_samples']} samples at "
                              f"{self.meta['sample_rate']} Hz, the config asks for {expect.clip_samples} at "
                              f"{expect.sample_rate} Hz")
        self.shard_size, self.examples = int(self.meta["shard_size"]), int(self.meta["examples"])
        self.epoch_size, self.seed, self.epoch = epoch_size, seed, 0
        self._order = self._permutation(0)
        self._shards: dict[int, np.ndarray] = {}
        self._info: dict[int, list[dict]] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 7]).permutation(self.examples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._order = self._permutation(self.epoch)

    def __len__(self) -> int:
        return self.epoch_size

    def _shard(self, index: int) -> tuple[np.ndarray, list[dict]]:
        if index not in self._shards:  # opened lazily in each worker process
            name = _shard_name(index)
            self._shards[index] = np.load(self.directory / f"{name}.npy", mmap_mode="r")
            self._info[index] = [json.loads(line) for line in (self.directory / f"{name}.jsonl").read_text()
                                 .splitlines() if line]
        return self._shards[index], self._info[index]

    def example(self, k: int) -> dict:
        """Cached example ``k`` with its metadata (``stems``, ``real_mixture``, ``degradation`` too)."""
        pairs, info = self._shard(k // self.shard_size)
        pair = np.asarray(pairs[k % self.shard_size], np.float32) / FULL_SCALE
        return {"clean": torch.from_numpy(pair[0]), "degraded": torch.from_numpy(pair[1]),
                **info[k % self.shard_size]}

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.epoch_size:
            raise IndexError(index)
        item = self.example(int(self._order[index % self.examples]))
        return {key: item[key] for key in ("clean", "degraded", "bitrate", "category")}


def training_dataset(config: MixConfig, epoch_size: int, seed: int) -> Dataset:
    """The trainer's data: the pair cache of ``config.pair_cache`` when set, else on-the-fly mixing."""
    if config.pair_cache:
        return PairCacheDataset(config.pair_cache, epoch_size, seed, expect=config)
    return MixtureDataset(config, split="train", epoch_size=epoch_size, seed=seed)
