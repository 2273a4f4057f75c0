"""Dataset layouts (MUSDB18-HQ, MoisesDB, folder) and the cached source-activity index."""

from __future__ import annotations

import os

import numpy as np
import pytest

from apollo_restore.data import activity
from apollo_restore.data.activity import ActivityConfig, active_starts, build_index, frame_rms_db
from apollo_restore.data.layouts import SPLITS, discover, hash_split
from apollo_restore.errors import ApolloError
from synthetic_data import FAMILIES, write_synthetic_dataset

SR = 44100
SECONDS = 8.0


@pytest.fixture(scope="module", params=["musdb", "moisesdb", "folder"])
def dataset(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    return request.param, write_synthetic_dataset(root, request.param, n_songs=3, seconds=SECONDS)


def test_discover_every_layout(dataset) -> None:
    layout, root = dataset
    songs = {split: discover(layout, root, split) for split in SPLITS}
    names = [song.name for split in SPLITS for song in songs[split]]
    assert len(names) == len(set(names)) == 6  # every song in exactly one split
    for split in SPLITS:
        for song in songs[split]:
            assert sorted(stem.family for stem in song.stems) == sorted(FAMILIES)
            assert [stem.is_vocal for stem in song.stems].count(True) == 1
            assert (song.mixture is not None) == (layout == "musdb")
            if layout == "moisesdb":
                assert all(len(stem.paths) == 2 for stem in song.stems)
                assert hash_split(song.name) == split
    if layout != "moisesdb":  # folder splits: train/test on disk, valid empty
        assert len(songs["train"]) == len(songs["test"]) == 3 and not songs["valid"]


def test_activity_index_drops_silence_and_is_cached(dataset, monkeypatch) -> None:
    layout, root = dataset
    config = ActivityConfig(window_seconds=3.0)
    split = next(s for s in SPLITS if discover(layout, root, s))
    index = build_index(layout, root, split, config)
    for _, stems in index:
        for stem in stems:
            seconds = stem.starts / stem.sample_rate
            # the synthetic stems are silent in [4.0, 7.5) s: windows mostly inside it are dropped
            assert seconds.size and not np.any((seconds >= 2.6) & (seconds <= 4.4))
            assert seconds.min() == 0.0 and seconds.max() <= SECONDS - 3.0
    assert list((root / ".apollo-index").glob(f"{layout}-{split}-*.json"))

    def fail(stem):
        raise AssertionError("the index must come from the cache")

    monkeypatch.setattr(activity, "read_stem", fail)
    again = build_index(layout, root, split, config)
    assert [s.starts.tolist() for _, st in again for s in st] == [s.starts.tolist() for _, st in index for s in st]
    monkeypatch.undo()
    build_index(layout, root, split, ActivityConfig(window_seconds=2.0))  # other settings: a second index
    assert len(list((root / ".apollo-index").glob(f"{layout}-{split}-*.json"))) == 2
    stem_file = index[0][1][0].stem.paths[0]
    os.utime(stem_file, ns=(stem_file.stat().st_atime_ns, stem_file.stat().st_mtime_ns + 10**9))
    build_index(layout, root, split, config)  # a changed file: a new index replaces the stale one
    assert len(list((root / ".apollo-index").glob(f"{layout}-{split}-*.json"))) == 2


def test_active_starts_threshold() -> None:
    audio = np.zeros((2, 10 * SR), np.float32)
    audio[:, 2 * SR:6 * SR] = 0.1  # active 2-6 s
    audio[:, 8 * SR:] = 1e-4  # -80 dBFS: below the floor
    starts = active_starts(audio, SR, ActivityConfig(window_seconds=2.0, hop_seconds=0.5)) / SR
    assert starts.tolist() == [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]  # > 50 % of 2 s active
    assert np.isfinite(frame_rms_db(np.zeros((1, 4410)), 441)).all()


def test_bad_roots_raise(tmp_path) -> None:
    with pytest.raises(ApolloError, match="does not exist"):
        discover("folder", tmp_path / "missing", "train")
    with pytest.raises(ApolloError, match="MUSDB18-HQ"):
        discover("musdb", tmp_path, "train")
    with pytest.raises(ApolloError, match="MoisesDB"):
        discover("moisesdb", tmp_path, "train")
    with pytest.raises(ApolloError, match="layout"):
        discover("stems", tmp_path, "train")
    with pytest.raises(ApolloError, match="split"):
        discover("folder", tmp_path, "training")
