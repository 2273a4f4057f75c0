"""Realism statistics (`data.stats`) and the `apollo data-stats` report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from apollo_restore.audio import write_audio
from apollo_restore.cli import main
from apollo_restore.data import DegradeConfig, MixConfig, build_testset
from apollo_restore.data.realism import STATISTICS, clip_sources, inside, summarise
from apollo_restore.data.stats import (
    THIRD_OCTAVE_HZ,
    band_share_db,
    clip_stats,
    hf_frame_share,
    loudness_at_full_scale,
    third_octave_db,
    top_octave_stats,
)
from apollo_restore.errors import ApolloError
from synthetic_data import write_synthetic_dataset

SR = 44100
T = np.arange(2 * SR) / SR


def _tone(hz: float, level: float = 1.0) -> np.ndarray:
    return level * np.sin(2 * np.pi * hz * T)


def _highpassed_noise(seed: int, above_hz: float = 12000.0) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(T.size))
    spectrum[np.fft.rfftfreq(T.size, 1 / SR) < above_hz] = 0
    return np.fft.irfft(spectrum, T.size)


def test_band_share_of_two_tones() -> None:
    both = np.stack([_tone(1000) + _tone(18000)] * 2)
    assert abs(band_share_db(both, SR) - 10 * np.log10(0.5)) < 0.01  # half the energy is above 16 kHz
    assert abs(band_share_db(_tone(1000) + _tone(18000, 0.01), SR) + 40.0) < 0.01
    assert band_share_db(_tone(1000)[None], SR) < -150 and np.isfinite(band_share_db(np.zeros((2, SR)), SR))


def test_third_octave_bands_and_share_above_16k() -> None:
    bands = third_octave_db(np.stack([_tone(4000) + _tone(12500)] * 2), SR)
    assert bands[THIRD_OCTAVE_HZ.index(4000)] == pytest.approx(-3.01, abs=0.05)
    assert bands[THIRD_OCTAVE_HZ.index(12500)] == pytest.approx(-3.01, abs=0.05)
    others = np.delete(bands, [THIRD_OCTAVE_HZ.index(4000), THIRD_OCTAVE_HZ.index(12500)])
    assert others.max() < -60 and np.isfinite(bands).all()
    stats = clip_stats(np.stack([_tone(1000)] * 2), SR)  # a loud low tone does not leak into the high band
    assert stats["above16k_db"] <= -110 and stats["band_20000"] <= -110


def test_frames_with_high_band_content() -> None:
    low = _tone(500, 0.5)
    air = _highpassed_noise(0, 17000) * 0.05
    half = low + np.where(T < 1.0, air, 0.0)
    assert hf_frame_share(half[None], SR) == pytest.approx(50.0, abs=6)
    assert hf_frame_share((low + air)[None], SR) == 100.0
    assert hf_frame_share((low + air * 1e-4)[None], SR) == 0.0  # 80 dB down: not "content"


def test_top_octave_flatness_and_change() -> None:
    noise = _highpassed_noise(1, 0) * 0.1
    flat, steady = top_octave_stats(noise[None], SR)
    assert flat == pytest.approx(np.exp(-np.euler_gamma), abs=0.06)  # white noise: exp(-gamma)
    assert steady < 1.0
    tonal, _ = top_octave_stats((_tone(15000) + noise * 1e-3)[None], SR)
    assert tonal < 0.05
    gated = noise * (np.mod(T, 0.2) < 0.1) + _tone(300, 0.5)
    assert top_octave_stats(gated[None], SR)[1] > 3 * steady
    assert np.isnan(top_octave_stats(_tone(300)[None], SR)).all()  # nothing up there: undefined, not 0 or 1


def test_crest_loudness_width() -> None:
    sine = np.stack([_tone(997)] * 2)
    stats = clip_stats(sine, SR)
    assert stats["crest_db"] == pytest.approx(3.01, abs=0.02)
    assert stats["loudness_lufs"] == pytest.approx(0.0, abs=0.2)  # BS.1770: full-scale 1 kHz sine, both channels
    assert loudness_at_full_scale(sine[:1], SR) == pytest.approx(stats["loudness_lufs"], abs=0.01)  # dual mono
    assert clip_stats(0.1 * sine, SR)["loudness_lufs"] == pytest.approx(stats["loudness_lufs"], abs=0.01)
    assert stats["width_db"] == -60.0
    assert clip_stats(np.stack([_tone(997), 0 * T]), SR)["width_db"] == pytest.approx(0.0, abs=0.01)
    assert np.isnan(clip_stats(sine[:1], SR)["width_db"])
    assert loudness_at_full_scale(np.zeros((2, SR)), SR) == -70.0


def test_summary_and_reference_range() -> None:
    rows = [{name: float(v) for name in STATISTICS} for v in range(9)]
    rows[0]["width_db"] = float("nan")
    summary = summarise(rows)
    assert summary["crest_db"] == {"median": 4.0, "q25": 2.0, "q75": 6.0, "n": 9}
    assert summary["width_db"]["n"] == 8
    assert inside(summary["crest_db"], summary["crest_db"])
    assert not inside({"median": 7.0, "n": 3}, summary["crest_db"])
    assert not inside(summary["crest_db"], {"n": 0, "q25": 0, "q75": 0})


@pytest.fixture(scope="module")
def three_sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("sets")
    stems = write_synthetic_dataset(base / "stems", "folder", n_songs=2, seconds=6.0, splits=("train", "test"))
    rng = np.random.default_rng(0)
    files = base / "files"
    write_audio(files / "a.flac", (np.stack([_tone(440), _tone(660)]) * 0.3).astype(np.float32), SR)
    write_audio(files / "deeper" / "b.wav", (_highpassed_noise(2, 0) * 0.1)[None].astype(np.float32), 48000)
    config = MixConfig(roots=str(stems), clip_seconds=1.0, degrade=DegradeConfig(bitrates=(64,)))
    build_testset(config, base / "pairs", n_per_bitrate=3, seed=int(rng.integers(100)), split="test")
    return stems, base / "pairs", files


def test_clip_sources_of_each_kind(three_sets) -> None:
    stems, pairs, files = three_sets
    songs = clip_sources(stems, clips=5, seconds=2.0, seed=1)
    assert len(songs) == 5 and all(s.length == 2 * SR and len(s.paths) == 4 for s in songs)
    assert clip_sources(stems, clips=5, seconds=2.0, seed=1) == songs  # seeded
    assert {s.read().shape for s in songs} == {(2, 2 * SR)}
    assert len(clip_sources(stems, clips=3, seconds=2.0, splits=("test",))) == 3
    assert [s.name for s in clip_sources(pairs)] == [f"mp3-64k-{j:04d}" for j in range(3)]
    loose = clip_sources(files)
    assert [s.name for s in loose] == ["a", "deeper/b"] and loose[1].read().shape == (1, 81034)  # 48 -> 44.1 kHz
    with pytest.raises(ApolloError, match="no songs of at least"):
        clip_sources(stems, seconds=60.0)
    with pytest.raises(ApolloError, match="no such set"):
        clip_sources(files / "missing")


def test_data_stats_cli_writes_table_figure_and_csv(three_sets, tmp_path, capsys) -> None:
    stems, pairs, files = three_sets
    out = tmp_path / "report"
    assert main(["data-stats", str(stems), str(pairs), str(files), "--names", "gen", "pairs", "real", "-o",
                 str(out), "--clips", "4", "--clip-seconds", "2", "-q"]) == 0
    table = (out / "table.md").read_text()
    assert "| statistic | gen (n=4) | pairs (n=3) | real (n=2, reference) |" in table
    assert table.count("\n| ") == len(STATISTICS) and "Inside: gen " in capsys.readouterr().out
    assert (out / "figure.png").stat().st_size > 10000
    with (out / "clips.csv").open() as handle:
        clips = list(csv.DictReader(handle))
    assert [r["set"] for r in clips] == ["gen"] * 4 + ["pairs"] * 3 + ["real"] * 2
    assert clips[-1]["width_db"] == "nan" and float(clips[-2]["width_db"]) > -30
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "real" and summary["summary"]["real"]["width_db"]["n"] == 1
    assert "| 1/3-oct 2 kHz (dB re total) | " in table and ", KS " in table
    # sets measured before come back from clips.csv, unchanged
    again = tmp_path / "again"
    assert main(["data-stats", f"{out / 'clips.csv'}:gen", f"{out / 'clips.csv'}:real", "-o", str(again), "-q"]) == 0
    first = json.loads((out / "summary.json").read_text())["summary"]
    second = json.loads((again / "summary.json").read_text())
    assert second["sets"] == ["gen", "real"]
    assert second["summary"]["gen"]["crest_db"] == pytest.approx(first["gen"]["crest_db"], rel=1e-6)
    assert second["ks_distance"]["real"]["crest_db"] == 0.0
    assert main(["data-stats", str(files), "-o", str(out)]) == 1
    assert "at least two sets" in capsys.readouterr().err
    assert main(["data-stats", f"{out / 'clips.csv'}:nothing", str(files), "-o", str(out)]) == 1
    assert "no clips of set 'nothing'" in capsys.readouterr().err
