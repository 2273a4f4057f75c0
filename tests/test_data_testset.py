"""Pre-rendered test sets: manifest contract, files on disk, PairDataset, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from apollo_restore.cli import main
from apollo_restore.data import CATEGORIES, DegradeConfig, MixConfig, PairDataset, build_testset, load_manifest
from apollo_restore.errors import ApolloError
from synthetic_data import write_synthetic_dataset


@pytest.fixture(scope="module")
def testset(tmp_path_factory):
    base = tmp_path_factory.mktemp("testset")
    root = write_synthetic_dataset(base / "data", "folder", n_songs=3, seconds=4.0, splits=("test",))
    config = MixConfig(roots=str(root), clip_seconds=1.0, degrade=DegradeConfig(bitrates=(24, 128)))
    return config, build_testset(config, base / "set", n_per_bitrate=4, seed=3), base / "set"


def test_manifest_contract(testset) -> None:
    _, examples, directory = testset
    assert [e.id for e in examples] == [f"mp3-{b}k-{j:04d}" for b in (24, 128) for j in range(4)]
    assert [e.bitrate for e in examples] == [24] * 4 + [128] * 4
    assert [e.category for e in examples[:4]] == list(CATEGORIES)
    lines = [json.loads(line) for line in (directory / "manifest.jsonl").read_text().splitlines()]
    for record, example in zip(lines, examples, strict=True):
        assert record["clean"] == f"clean/{record['id']}.flac" and record["sample_rate"] == 44100
        assert record["codec"] == "mp3" and example.extra["stems"] and example.extra["split"] == "test"
        info = sf.info(str(example.degraded))
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, 44100)
    assert load_manifest(directory) == examples


def test_pair_dataset_and_reproducibility(testset, tmp_path) -> None:
    config, examples, directory = testset
    pairs = PairDataset(directory)
    item = pairs[5]
    assert item["id"] == examples[5].id and item["bitrate"] == 128
    assert item["clean"].shape == item["degraded"].shape == (2, 44100) and item["clean"].dtype == torch.float32
    peak = max(float(item["clean"].abs().max()), float(item["degraded"].abs().max()))
    assert 0.999 < peak <= 1.0
    # low bitrate really is degraded more than high bitrate
    errors = [float(((pairs[i]["clean"] - pairs[i]["degraded"]) ** 2).mean()) for i in (0, 4)]
    assert errors[0] > errors[1]
    again = build_testset(config, tmp_path / "again", n_per_bitrate=1, seed=3)
    first = sf.read(str(again[0].clean))[0]
    assert np.allclose(first, sf.read(str(examples[0].clean))[0], atol=1e-6)


def test_manifest_errors(tmp_path) -> None:
    with pytest.raises(ApolloError, match="manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"id": "x", "clean": "c.flac"}\n')
    with pytest.raises(ApolloError, match=":1: malformed"):
        load_manifest(tmp_path)


def test_make_testset_cli(testset, tmp_path, capsys) -> None:
    config, _, _ = testset
    out = tmp_path / "cli-set"
    args = ["make-testset", str(out), "--root", config.roots[0], "--per-bitrate", "2", "--bitrates", "32", "64",
            "--clip-seconds", "1", "--codec", "aac"]
    assert main(args) == 0
    assert "4 pairs" in capsys.readouterr().out
    examples = load_manifest(out)
    assert [(e.codec, e.bitrate) for e in examples] == [("aac", 32)] * 2 + [("aac", 64)] * 2
    assert main(["make-testset", str(tmp_path / "bad"), "--root", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "bad").exists()
