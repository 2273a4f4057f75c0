"""`apollo make-data`: a tiny real render (small SoundFont, real drum kit), resumable, readable by the
folder layout, mastered (stems sum to the song, loudness and ceiling as planned, parameters in meta.json);
split separation of scores, SoundFonts, kits, synth families, loops and the guitar recordings; strum
rendering; every style arranges."""

from __future__ import annotations

import ctypes.util
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from apollo_restore.cli import main
from apollo_restore.data import MixConfig, MixtureDataset
from apollo_restore.data.generator.make import SPLIT_BANKS
from apollo_restore.data.generator.presets import PresetBand
from apollo_restore.data.generator.samples import (
    EVALUATION_LOOPS,
    SPLIT_KITS,
    STRUM_SPLITS,
    STRUMS,
    available_kits,
    kit_folder,
    loops,
    strum_index,
)
from apollo_restore.data.generator.scores import ScoreNotes, catalogue
from apollo_restore.data.generator.song import INSTRUMENTS, StemPlan, bar_chords, plan_song
from apollo_restore.data.generator.voices import SPLIT_FAMILIES
from apollo_restore.data.layouts import discover
from apollo_restore.errors import ApolloError
from prerequisites import unavailable

SOUNDFONTS = Path("/usr/share/sounds/sf2")


def _missing() -> str | None:
    if ctypes.util.find_library("fluidsynth") is None:
        return "libfluidsynth is not installed (scripts/install-data-deps.sh)"
    if not (SOUNDFONTS / SPLIT_BANKS["valid"][0]).is_file():
        return "timgm6mb-soundfont is not installed (scripts/install-data-deps.sh)"
    if not available_kits("valid"):
        return "hydrogen-drumkits is not installed (scripts/install-data-deps.sh)"
    return None


def test_splits_share_no_score_bank_kit_or_take() -> None:
    scores = {split: {p for paths in catalogue(split).values() for p in paths} for split in SPLIT_BANKS}
    assert all(scores.values())
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not scores[a] & scores[b]
        assert not set(SPLIT_KITS[a]) & set(SPLIT_KITS[b])
    for evaluation in ("valid", "test"):  # the evaluation splits hear no training bank or synth patch family
        assert not set(SPLIT_BANKS["train"]) & set(SPLIT_BANKS[evaluation])
        assert not set(SPLIT_FAMILIES["train"]) & set(SPLIT_FAMILIES[evaluation])
    assert STRUM_SPLITS == ("train",)  # one recorded guitar and the loops: training-only
    assert not {path.stem for path in loops()} & EVALUATION_LOOPS  # loops of the real-music set stay out


def test_bar_chords_find_triads() -> None:
    c_major = np.array([[0, 4, 60], [0, 4, 64], [0, 4, 67]], float)
    a_minor = np.array([[4, 2, 57], [4, 2, 60], [6, 2, 64], [6, 1, 69]], float)
    assert bar_chords([np.concatenate([c_major, a_minor])], 4.0, 3) == [(0, "major"), (9, "minor"), (9, "minor")]


def test_tiny_render_is_a_usable_resumable_dataset(tmp_path, capsys) -> None:
    if _missing():
        unavailable(_missing())
    out = tmp_path / "gen"
    args = ["make-data", str(out), "--hours", "0.004", "--splits", "valid", "--max-seconds", "6", "-j", "1",
            "--quiet"]
    assert main([*args, "--report", "2"]) == 0
    printed = capsys.readouterr().out
    assert " 0 scores skipped" in printed and " per CPU-minute" in printed
    assert "valid: median energy above 16 kHz (dB re total) over 2 mixes: clean -" in printed
    songs = sorted((out / "valid").iterdir())
    seconds = [json.loads((song / "meta.json").read_text())["seconds"] for song in songs]
    assert len(songs) >= 2 and sum(seconds) >= 0.004 * 3600 > sum(seconds[:-2])  # --hours, a little over
    for song in songs:
        meta = json.loads((song / "meta.json").read_text())
        assert meta["soundfont"]["file"] == "TimGM6mb.sf2" and meta["score"]["source"] in catalogue("valid")[
            meta["score"]["genre"]]
        audio = [sf.read(str(song / s["file"]), dtype="float32")[0] for s in meta["stems"]]
        assert len(audio) >= 2 and all(s["family"] and s["license"] and s["source"] and "fx" in s
                                       for s in meta["stems"])
        for stem in audio:
            assert stem.shape == (round(meta["seconds"] * 44100), 2) and np.abs(stem).max() > 1e-3
        master = meta["master"]
        assert np.abs(sum(audio)).max() <= 10 ** (master["ceiling_dbfs"] / 20) + 2e-3  # 16-bit rounding
        assert master["loudness_lufs"] <= master["target_lufs"] + 0.5
        for stem in meta["stems"]:  # a band-limited preset is only used behind saturation
            if stem.get("band_limited"):
                assert stem["fx"]["saturation_db"] > 0 and stem["fx"]["saturation_mix"] > 0
    assert {s.name for s in discover("folder", out, "valid")} == {s.name for s in songs}
    assert len(list((out / ".apollo-index").glob("folder-valid-*.json"))) == 1  # built by make-data
    item = MixtureDataset(MixConfig(roots=str(out), clip_seconds=1.0), "valid", epoch_size=2)[0]
    assert item["clean"].shape == (2, 44100)
    stamp = (songs[0] / "meta.json").stat().st_mtime_ns
    assert main(args) == 0  # resume: nothing left to do
    assert "rendered 0 songs" in capsys.readouterr().out
    assert (songs[0] / "meta.json").stat().st_mtime_ns == stamp


def _no_strums() -> bool:
    try:
        kit_folder(STRUMS)
    except ApolloError:
        return True
    return False


def test_every_chord_can_be_strummed() -> None:
    """36 triads are reachable from the recorded chords (shifted at most 2 semitones), each strum audible."""
    if _no_strums():
        unavailable("hydrogen-drumkits-effects is not installed (scripts/install-data-deps.sh)")
    from apollo_restore.data.generator.song import _render_strums

    assert len(strum_index()) >= 20
    strums = [(0.5 * k, k % 12, quality, "DOWN") for k, quality in enumerate(["major", "minor", "m7b5"] * 12)]
    audio = _render_strums(StemPlan("g", "guitar", "test", 0.0, 0.0, strums=strums), 44100 * 19,
                           np.random.default_rng(0))
    level = np.abs(audio[:, : 44100 * 18].reshape(2, 36, -1)).max(axis=(0, 2))
    assert (level > 0.01).all()


def test_every_style_arranges_with_its_sources() -> None:
    """Plans only (no rendering): each style appears, uses what it should and obeys the bandwidth table."""
    melody = np.array([[k * 0.5, 0.5, 67 + (k * 2) % 7] for k in range(64)], float)
    chorale = ScoreNotes("bach/bwv-test.mxl", "chorale", [melody, melody - [0, 0, 12], melody - [0, 0, 24]],
                         ["s", "a", "b"], 4.0, None)
    folk = ScoreNotes("ryansMammoth/test.abc", "folk", [melody], ["tune"], 4.0, None)
    presets = {program: PresetBand(program, 20000.0 if program % 2 else 9000.0, -40.0 if program % 2 else -90.0)
               for program, _, _ in INSTRUMENTS.values()}
    styles = set()
    for seed in range(40):
        for score in (chorale, folk):
            plan = plan_song(score, "x", "train", seed, 90.0, ["ColomboAcousticDrumkit", "sonicpi:electronic"],
                             presets)
            styles.add(plan.style)
            assert plan.stems and plan.seconds <= 92.0 and -26 <= plan.bus.target_lufs <= -7
            for stem in plan.stems:
                if stem.program is not None:
                    assert stem.band_limited == (stem.program % 2 == 0)
                    assert not stem.band_limited or stem.fx.saturation_db > 0
            if plan.style in ("pop", "rock", "electronic"):
                assert plan.seconds > 30  # a short tune is played through again
            if plan.style == "electronic":
                assert any(s.patch is not None for s in plan.stems)
    assert styles == {"classical", "folk", "pop", "rock", "electronic"}
    test_plan = plan_song(folk, "x", "test", 3, 60.0, ["HardElectro1"], presets)
    assert all(s.patch is None or s.patch.family in SPLIT_FAMILIES["test"] for s in test_plan.stems)
    assert not any(s.loop or s.strums for s in test_plan.stems)
