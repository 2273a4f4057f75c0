"""Sets made from finished recordings (`make-testset --mixtures`): contract, ranks, subsets, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from apollo_restore.audio import read_audio, write_audio
from apollo_restore.cli import main
from apollo_restore.data import DegradeConfig, PairDataset, build_mixture_testset, load_manifest
from apollo_restore.data.testset import source_group, spread_order
from apollo_restore.errors import ApolloError
from apollo_restore.evaluate.sources import read_ids, subset
from prerequisites import REAL_MUSIC, require


def _recording(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    """Noise bursts with a 1/f-ish tilt: full-band, so every bitrate cuts something."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    noise = np.cumsum(rng.standard_normal((channels, n)), axis=1) * 0.02 + rng.standard_normal((channels, n)) * 0.1
    envelope = 0.3 + 0.7 * (np.sin(2 * np.pi * 3 * np.arange(n) / rate) > 0)
    audio = noise * envelope
    return (0.7 * audio / np.abs(audio).max()).astype(np.float32)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recordings")
    specs = {"alpha_one": (1.2, 44100, 2), "alpha_two": (1.0, 44100, 1), "beta_one": (0.8, 48000, 2),
             "beta_two": (1.0, 44100, 2), "gamma_one": (1.1, 44100, 1)}
    for k, (name, (seconds, rate, channels)) in enumerate(specs.items()):
        write_audio(folder / f"{name}.flac", _recording(seconds, rate, channels, k), rate, "PCM_16")
    (folder / "manifest.csv").write_text("file,category,content\nbeta_one.flac,drums,a loop\n"
                                         "alpha_two.flac,,a voice\n")
    (folder / "notes.txt").write_text("not audio")
    return folder


@pytest.fixture(scope="module")
def mixture_set(recordings, tmp_path_factory):
    out = tmp_path_factory.mktemp("set") / "real"
    return build_mixture_testset(recordings, out, DegradeConfig(bitrates=(32, 64, 128))), out


def test_every_file_at_every_bitrate_with_one_clean_file(recordings, mixture_set) -> None:
    examples, out = mixture_set
    assert len(examples) == 15 and [e.bitrate for e in examples] == [32] * 5 + [64] * 5 + [128] * 5
    assert examples[0].id == "mp3-32k-alpha_one" and examples[0].clean == out / "clean" / "alpha_one.flac"
    assert len(list((out / "clean").iterdir())) == 5 and len(list((out / "degraded").iterdir())) == 15
    by_id = {e.id: e for e in examples}
    assert by_id["mp3-64k-beta_one"].category == "drums"  # from manifest.csv
    assert by_id["mp3-64k-alpha_two"].category == "mixture"  # empty cell
    assert by_id["mp3-64k-alpha_two"].extra["source_info"]["content"] == "a voice"
    assert by_id["mp3-32k-gamma_one"].extra["group"] == "gamma"
    peaks: dict[str, float] = {}
    for example in examples:  # own channels and length, at 44.1 kHz, nothing clipped, aligned
        clean, rate = read_audio(example.clean)
        degraded, _ = read_audio(example.degraded)
        source, source_rate = read_audio(recordings / example.extra["source"])
        assert rate == 44100 and clean.shape == degraded.shape and clean.shape[0] == source.shape[0]
        assert abs(clean.shape[1] - round(source.shape[1] * 44100 / source_rate)) <= 1
        peak = max(float(np.abs(clean).max()), float(np.abs(degraded).max()))
        peaks[example.extra["source"]] = max(peaks.get(example.extra["source"], 0.0), peak)
        lag = np.argmax(np.correlate(degraded[0, 2000:6000], clean[0, 2000:6000], "full")) - 3999
        assert lag == 0
    assert list(peaks.values()) == pytest.approx([1.0] * 5, abs=1e-4)  # one scale per recording, no clipping
    # a lower bitrate is a worse copy of the same clean file
    errors = [float(np.mean((read_audio(by_id[f"mp3-{b}k-beta_two"].degraded)[0]
                             - read_audio(by_id[f"mp3-{b}k-beta_two"].clean)[0]) ** 2)) for b in (32, 128)]
    assert errors[0] > 1.3 * errors[1]


def test_ranks_spread_small_subsets_over_sources_and_files(mixture_set) -> None:
    examples, out = mixture_set
    assert [source_group(n) for n in ("visqol_glock", "dsd100-055 x", "encodec")] == ["visqol", "dsd100", "encodec"]
    assert spread_order(["b_1", "a_1", "a_2", "c_1", "a_3"]) == ["a_1", "b_1", "c_1", "a_2", "a_3"]
    for b in range(3):  # each bitrate's ranks are a permutation of the files
        assert sorted(e.extra["rank"] for e in examples if e.bitrate == (32, 64, 128)[b]) == list(range(5))
    small = subset(examples, per_cell=1)
    # one per (bitrate, category): drums holds only beta_one; the mixture cell takes the lowest rank
    mixture = [e for e in small if e.category == "mixture"]
    assert len(small) == 6 and len(mixture) == 3
    assert len({e.extra["source"] for e in mixture}) == 3  # different files at different bitrates
    assert len({e.extra["group"] for e in mixture}) >= 2
    assert subset(examples, per_cell=1) == small and subset(examples) == examples  # stable
    # the dataset view gives the same subset, as tensors with the file's channels
    pairs = PairDataset(out, per_cell=1)
    assert [e.id for e in pairs.examples] == [e.id for e in small]
    item = pairs[0]
    assert item["clean"].shape == item["degraded"].shape and item["clean"].shape[0] in (1, 2)


def test_id_lists(mixture_set, tmp_path) -> None:
    examples, out = mixture_set
    listing = tmp_path / "ids.txt"
    listing.write_text("# validation\nmp3-128k-gamma_one\n\nmp3-32k-alpha_one  # a comment\n")
    ids = read_ids(listing)
    assert ids == ["mp3-128k-gamma_one", "mp3-32k-alpha_one"]
    assert [e.id for e in subset(examples, ids=ids)] == ["mp3-32k-alpha_one", "mp3-128k-gamma_one"]
    assert len(PairDataset(out, ids=ids)) == 2
    with pytest.raises(ApolloError, match="not in the set"):
        subset(examples, ids=["mp3-32k-nothing"])


def test_errors_are_one_line(tmp_path, capsys) -> None:
    with pytest.raises(ApolloError, match="no audio files"):
        build_mixture_testset(tmp_path, tmp_path / "out", DegradeConfig(bitrates=(64,)))
    write_audio(tmp_path / "quiet.wav", np.zeros((1, 4410), np.float32), 44100)
    assert main(["make-testset", str(tmp_path / "out"), "--mixtures", str(tmp_path), "--bitrates", "64"]) == 1
    err = capsys.readouterr().err.strip()
    assert "silent" in err.splitlines()[-1] and "Traceback" not in err  # after the progress bar
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
    assert main(["make-testset", str(tmp_path / "o"), "--mixtures", str(tmp_path / "missing")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_cli_and_evaluate_on_a_real_recording(tmp_path, capsys, tiny_checkpoint) -> None:
    """Two real lossless recordings (linked, never copied), one bitrate, a tiny model through evaluate."""
    require(REAL_MUSIC)
    folder = tmp_path / "music"
    folder.mkdir()
    for name in ("smstools_vignesh.flac", "sonicpi_loop_compus.flac"):
        (folder / name).symlink_to(REAL_MUSIC / name)
    (folder / "manifest.csv").symlink_to(REAL_MUSIC / "manifest.csv")
    out = tmp_path / "set"
    assert main(["make-testset", str(out), "--mixtures", str(folder), "--bitrates", "48"]) == 0
    assert "2 pairs (mixture 2)" in capsys.readouterr().out
    examples = load_manifest(out)
    loop = next(e for e in examples if e.extra["source"] == "sonicpi_loop_compus.flac")
    assert loop.extra["source_info"]["licence"].startswith("CC0") and sf.info(str(loop.clean)).channels == 2
    evaluation = tmp_path / "eval"
    (tmp_path / "ids.txt").write_text(loop.id + "\n")
    assert main(["evaluate", "--data", str(out), "--checkpoint", str(tiny_checkpoint), "--name", "tiny", "-o",
                 str(evaluation), "--no-visqol", "--jobs", "1", "-q", "--rtf-iterations", "0",
                 "--ids", str(tmp_path / "ids.txt")]) == 0
    rows = json.loads((evaluation / "results.json").read_text())["rows"]
    assert {(r["system"], r["category"], r["bitrate"]) for r in rows} == {("input", "mixture", 48),
                                                                          ("tiny", "mixture", 48)}
    cutoff = next(r["cutoff_hz"] for r in rows if r["system"] == "input")
    assert 7000 < cutoff < 8500  # LAME's 48 kbit/s stereo low-pass, found on real music (mono: ~11 kHz)
