"""On-the-fly mixing: reproducibility, scaling, categories, per-example bitrates across real workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from apollo_restore.data import CATEGORIES, DegradeConfig, MixConfig, MixtureDataset
from apollo_restore.data.mixing import category_of
from apollo_restore.degrade import Degradation
from apollo_restore.errors import ApolloError
from synthetic_data import write_synthetic_dataset

CLIP = 1.0
LAYOUTS = ("musdb", "moisesdb", "folder")  # MoisesDB: 2 of the 3 songs hash into train


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("mixing")
    return tuple(write_synthetic_dataset(base / layout, layout, n_songs=3, seconds=4.0, splits=("train",))
                 for layout in LAYOUTS)


def make(roots, **overrides) -> MixtureDataset:
    config = MixConfig(roots=tuple(str(r) for r in roots), layouts=LAYOUTS, clip_seconds=CLIP, **overrides)
    return MixtureDataset(config, "train", epoch_size=64, seed=7)


def test_items_are_reproducible_and_scaled(roots) -> None:
    dataset = make(roots)
    assert len(dataset.songs) == 3 + 2 + 3
    assert {len(stem.stem.paths) for _, stems in dataset.songs for stem in stems} == {1, 2}  # MoisesDB sums
    first, again = dataset[3], dataset[3]
    assert torch.equal(first["clean"], again["clean"]) and torch.equal(first["degraded"], again["degraded"])
    assert first["clean"].shape == first["degraded"].shape == (2, 44100)
    assert first["clean"].dtype == torch.float32
    peak = max(first["clean"].abs().max(), first["degraded"].abs().max())
    assert abs(float(peak) - 1.0) < 1e-6
    assert first["bitrate"] in (24, 32, 48, 64, 96, 128) and first["category"] in CATEGORIES
    assert not torch.equal(dataset[4]["clean"], first["clean"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[3]["clean"], first["clean"])
    with pytest.raises(IndexError):
        dataset[64]


def test_stem_mixes_follow_config(roots) -> None:
    dataset = make(roots, real_mixture_fraction=0.0, min_stems=2, max_stems=3)
    rng = np.random.default_rng(0)
    for _ in range(6):
        example = dataset.render(rng)
        assert 2 <= len(example.stems) <= 3 and not example.real_mixture
        assert len({Path(s["file"]).parent for s in example.stems}) == len(example.stems)  # different songs
        assert all(-10.0 <= s["gain_db"] <= 10.0 for s in example.stems)
    real = make(roots, real_mixture_fraction=1.0).render(np.random.default_rng(1))
    assert real.real_mixture and {s["gain_db"] for s in real.stems} == {0.0}


def test_forced_category_and_degradation(roots) -> None:
    dataset = make(roots)
    assert dataset.available_categories() == list(CATEGORIES)
    rng = np.random.default_rng(2)
    for category in CATEGORIES:
        example = dataset.render(rng, Degradation("mp3", 48), category)
        assert example.category == category and example.bitrate == 48
        vocal = [s["family"] == "vocals" for s in example.stems]
        assert category_of(vocal) == category
    lowpass = make(roots, degrade=DegradeConfig(codec="lowpass", cutoffs_hz=(3000.0,)))[0]
    spectrum = np.abs(np.fft.rfft(lowpass["degraded"][0].numpy())) ** 2
    assert spectrum[4000:].sum() < 1e-4 * spectrum.sum() and lowpass["bitrate"] == 0


def test_workers_draw_many_bitrates(roots) -> None:
    """The reference froze one bitrate per worker; here every example draws its own."""
    dataset = make(roots)
    dataset.epoch_size = 24
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    by_batch = [batch["bitrate"].tolist() for batch in loader]
    drawn = [b for batch in by_batch for b in batch]
    assert len(set(drawn)) >= 5
    assert sum(len(set(batch)) > 1 for batch in by_batch) >= 4  # bitrates vary within each worker's batch
    single = [dataset[i]["bitrate"] for i in range(24)]
    assert drawn == single  # workers change nothing


def test_config_and_dataset_errors(tmp_path, roots) -> None:
    with pytest.raises(ApolloError, match="does not exist"):
        MixtureDataset(MixConfig(roots=str(tmp_path / "nope")))
    (tmp_path / "empty" / "train" / "song").mkdir(parents=True)
    with pytest.raises(ApolloError, match="no usable stems"):
        MixtureDataset(MixConfig(roots=str(tmp_path / "empty")))
    with pytest.raises(ApolloError):
        MixConfig(roots=str(tmp_path), layouts="stems")
    with pytest.raises(ApolloError):
        MixConfig(roots=str(tmp_path), min_stems=3, max_stems=2)
    config = MixConfig(roots=[str(r) for r in roots], layouts=list(LAYOUTS), degrade={"bitrates": [32]})
    assert config.degrade.bitrates == [32] and config.root_layouts()[0][1] == "musdb"
