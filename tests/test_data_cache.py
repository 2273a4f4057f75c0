"""Pre-rendered pair cache: the on-the-fly draws exactly (so the same distributions), resumable shards,
epochs as permutations, a real multi-worker DataLoader, and `apollo train` reading it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from scipy import stats
from torch.utils.data import DataLoader

from apollo_restore.cli import main
from apollo_restore.data import DegradeConfig, MixConfig, MixtureDataset
from apollo_restore.data.cache import CACHE_EPOCH, PairCacheDataset, build_cache, training_dataset
from apollo_restore.errors import ApolloError
from synthetic_data import write_synthetic_dataset

BITRATES = (24, 32, 48, 64, 96, 128)


@pytest.fixture(scope="module")
def stems(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("cache-data") / "folder", "folder", n_songs=5,
                                   seconds=4.0, splits=("train",))


@pytest.fixture(scope="module")
def config(stems) -> MixConfig:
    return MixConfig(roots=str(stems), clip_seconds=0.5, degrade=DegradeConfig(bitrates=BITRATES))


@pytest.fixture(scope="module")
def cache(config, tmp_path_factory):
    return build_cache(config, tmp_path_factory.mktemp("cache") / "pairs", examples=96, seed=5, shard_size=32,
                       jobs=2)


def test_cached_pairs_are_the_on_the_fly_draws(config, cache) -> None:
    cached = PairCacheDataset(cache, epoch_size=96, seed=0)
    live = MixtureDataset(config, "train", epoch_size=96, seed=5)
    live.set_epoch(CACHE_EPOCH)
    for k in (0, 31, 32, 95):  # across shard borders
        pair, item = cached.example(k), live[k]
        assert pair["bitrate"] == item["bitrate"] and pair["category"] == item["category"]
        for key in ("clean", "degraded"):  # equal up to 16-bit rounding
            assert torch.allclose(pair[key], item[key], atol=1.0 / 32767 + 1e-6), (k, key)
    assert json.loads((cache / "cache.json").read_text())["examples"] == 96
    assert sorted(p.name for p in cache.glob("shard-*")) == [f"shard-{s:05d}.{e}" for s in range(3)
                                                             for e in ("jsonl", "npy")]


def test_distributions_match_on_the_fly_mixing(config, cache) -> None:
    """Bitrates, real-mixture share, stem counts, gains and levels of the cache against fresh on-the-fly
    draws of another seed: the same distributions (chi-square / KS, and the configured ranges)."""
    cached = PairCacheDataset(cache, epoch_size=96, seed=0)
    pairs = [cached.example(k) for k in range(96)]
    live = MixtureDataset(config, "train", epoch_size=96, seed=11)
    draws = [live.render(np.random.default_rng([11, 0, k])) for k in range(96)]
    bitrates = [p["bitrate"] for p in pairs]
    counts = [bitrates.count(b) for b in BITRATES]
    assert stats.chisquare(counts).pvalue > 0.01  # uniform over the six bitrates
    assert 0.3 < np.mean([p["real_mixture"] for p in pairs]) < 0.7  # half real mixtures
    stem_counts = [len(p["stems"]) for p in pairs if not p["real_mixture"]]
    live_counts = [len(d.stems) for d in draws if not d.real_mixture]
    assert min(stem_counts) >= 1 and max(stem_counts) <= 8
    assert stats.ks_2samp(stem_counts, live_counts).pvalue > 0.01
    gains = [s["gain_db"] for p in pairs if not p["real_mixture"] for s in p["stems"]]
    assert min(gains) >= -10 and max(gains) <= 10 and stats.kstest(np.array(gains) / 20 + 0.5, "uniform").pvalue > 0.01
    level = [float(p["clean"].pow(2).mean().sqrt()) for p in pairs]
    live_level = [float(np.sqrt(np.mean(d.clean**2))) for d in draws]
    assert stats.ks_2samp(level, live_level).pvalue > 0.01
    assert all(abs(max(float(p["clean"].abs().max()), float(p["degraded"].abs().max())) - 1) < 1e-3 for p in pairs)


def test_epochs_are_permutations_and_workers_agree(cache) -> None:
    dataset = PairCacheDataset(cache, epoch_size=96, seed=3)
    first = [int(i) for i in dataset._order]
    assert sorted(first) == list(range(96))
    dataset.set_epoch(1)
    assert [int(i) for i in dataset._order] != first
    dataset.set_epoch(0)
    single = [dataset[i]["clean"] for i in range(8)]
    loader = DataLoader(dataset, batch_size=4, num_workers=2, sampler=list(range(8)))
    batched = torch.cat([batch["clean"] for batch in loader])
    assert all(torch.equal(a, b) for a, b in zip(single, batched, strict=True))
    with pytest.raises(IndexError):
        dataset[96]


def test_resume_and_refusals(config, cache, tmp_path, capsys) -> None:
    shard = cache / "shard-00001.npy"
    before = shard.stat().st_mtime_ns
    (cache / "shard-00002.npy").unlink()
    build_cache(config, cache, examples=96, seed=5, shard_size=32)
    assert shard.stat().st_mtime_ns == before and (cache / "shard-00002.npy").is_file()  # only the missing one
    with pytest.raises(ApolloError, match="other data or settings"):
        build_cache(config, cache, examples=96, seed=6, shard_size=32)
    other = MixConfig(roots=config.roots, clip_seconds=1.0)
    with pytest.raises(ApolloError, match="cached clips are 22050 samples"):
        PairCacheDataset(cache, 8, expect=other)
    assert isinstance(training_dataset(MixConfig(roots=config.roots, clip_seconds=0.5, pair_cache=str(cache)), 8, 0),
                      PairCacheDataset)
    assert main(["make-cache", str(tmp_path / "c"), "--examples", "4"]) == 1
    assert "--root" in capsys.readouterr().err


def test_train_reads_the_cache(stems, cache, tmp_path) -> None:
    config = {"model": {"feature_dim": 16, "num_layers": 1, "num_heads": 2},
              "data": {"roots": [str(stems)], "clip_seconds": 0.5, "pair_cache": str(cache),
                       "degrade": {"bitrates": list(BITRATES)}},
              "validation": {"items": 1, "split": "train"}, "discriminator": {"fft_sizes": [64], "hidden_channels": 4},
              "loss": {"fft_sizes": [64]},
              "train": {"run_dir": str(tmp_path / "run"), "epoch_size": 3, "max_epochs": 1, "warmup_steps": 1,
                        "num_workers": 1, "device": "cpu", "progress": False, "log_every_steps": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "g_rec" in r] == [1, 2, 3]
