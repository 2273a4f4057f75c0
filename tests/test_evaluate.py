"""Spectrogram figures, reports and the end-to-end `apollo evaluate` run on a tiny test set."""

from __future__ import annotations

import numpy as np
import pytest

from apollo_restore.errors import ApolloError
from apollo_restore.evaluate.metrics import HOP, N_FFT
from apollo_restore.evaluate.spectrogram import plot_spectrograms
from apollo_restore.stft import bin_frequencies, power_spectrogram

SR = 44100


def test_power_spectrogram_full_scale_sine_peaks_at_0_dbfs():
    t = np.arange(SR) / SR
    freq = 46 * SR / 2048  # centred on bin 46: no scalloping loss
    power = power_spectrogram(np.sin(2 * np.pi * freq * t), N_FFT, HOP)
    assert power.shape == (1 + SR // 512, 1025)
    peak_bin = int(np.argmax(power[40]))
    assert peak_bin == 46 and bin_frequencies(SR, N_FFT)[peak_bin] == pytest.approx(freq)
    assert 10 * np.log10(power[40, peak_bin]) == pytest.approx(0.0, abs=1e-6)


def test_plot_spectrograms_writes_png_atomically(tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((2, SR // 2)).astype(np.float32) * 0.1
    out = tmp_path / "figs" / "spec.png"
    written = plot_spectrograms([("input", stereo[0]), ("restored", stereo), ("reference", stereo)], SR, out,
                                title="t")
    assert written == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["spec.png"]  # no temporary left behind


@pytest.mark.parametrize(
    ("panels", "path"),
    [([], "a.png"), ([("x", np.zeros((2, 2, 2)))], "a.png"), ([("x", np.array([np.nan, 1.0]))], "a.png"),
     ([("x", np.zeros(100))], "a.unknownformat")],
)
def test_plot_spectrograms_bad_input_is_one_line_error(tmp_path, panels, path):
    with pytest.raises(ApolloError):
        plot_spectrograms(panels, SR, tmp_path / path)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- end to end on a tiny test set

CATEGORIES = ("vocal", "single_stem")


def _clip(seed: int, seconds: float = 1.0) -> np.ndarray:
    """Harmonic tone plus decaying noise bursts: full-band, so the codec's low-pass shows."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = sum((0.2 / h) * np.sin(2 * np.pi * 220.0 * h * t + rng.uniform(0, 6, (2, 1))) for h in range(1, 20))
    bursts = rng.standard_normal((2, n)) * np.exp(-(np.arange(n) % (SR // 4)) / 600.0)
    x = x + 0.3 * bursts
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _write_testset(root, bitrates=(32, 128)):
    """A test set in the manifest.jsonl format: one stereo 1 s clip per (bitrate, category)."""
    import json

    from apollo_restore.audio import write_audio
    from apollo_restore.degrade import degrade

    lines = []
    for bitrate in bitrates:
        for j, category in enumerate(CATEGORIES):
            clip_id = f"mp3-{bitrate}k-{j:04d}"
            clean = _clip(bitrate + j)
            write_audio(root / "clean" / f"{clip_id}.flac", clean, SR)
            write_audio(root / "degraded" / f"{clip_id}.flac", degrade(clean, SR, "mp3", bitrate), SR)
            lines.append(json.dumps({"id": clip_id, "clean": f"clean/{clip_id}.flac", "codec": "mp3",
                                     "degraded": f"degraded/{clip_id}.flac", "bitrate": bitrate,
                                     "category": category, "sample_rate": SR}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _tiny_checkpoint(path, seed=0, residual=False):
    import torch

    from apollo_restore.checkpoint import save_model
    from apollo_restore.model import Apollo, ApolloConfig

    torch.manual_seed(seed)
    return save_model(Apollo(ApolloConfig(feature_dim=16, num_layers=1, residual=residual)), path)


def _apollo(*argv) -> int:
    from apollo_restore.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real `apollo evaluate` run (tiny model, 4 clips, 2 scoring processes), shared by the tests below."""
    root = tmp_path_factory.mktemp("eval")
    testset = _write_testset(root / "set")
    checkpoint = _tiny_checkpoint(root / "tiny")
    out = root / "out"
    assert _apollo("evaluate", "--data", testset, "--checkpoint", checkpoint, "-o", out, "--jobs", 2, "-q") == 0
    return testset, checkpoint, out


def test_evaluate_writes_every_example_table_and_figure(tiny_run):
    import json

    from apollo_restore.audio import read_audio
    from apollo_restore.evaluate import metrics

    testset, _, out = tiny_run
    payload = json.loads((out / "results.json").read_text())
    rows = payload["rows"]
    assert sorted({r["system"] for r in rows}) == ["input", "tiny"]
    assert len(rows) == 8 and {r["bitrate"] for r in rows} == {32, 128}
    assert payload["systems"]["tiny"]["params"] > 0 and payload["systems"]["tiny"]["rtf_ms"] > 0
    # the baseline row is exactly the metrics of the unprocessed degraded input
    row = next(r for r in rows if r["system"] == "input" and r["id"] == "mp3-32k-0000")
    clean, _ = read_audio(testset / "clean" / "mp3-32k-0000.flac")
    degraded, _ = read_audio(testset / "degraded" / "mp3-32k-0000.flac")
    cutoff = metrics.codec_cutoff_hz(clean, degraded, SR)
    assert 5000 < row["cutoff_hz"] < 6000
    expected = metrics.score(clean, degraded, SR, cutoff)
    for name in metrics.METRICS:
        assert row[name] == pytest.approx(expected[name], abs=1e-6), name
    # restored audio kept for listening, same shape as the input
    restored, _ = read_audio(out / "restored" / "tiny" / "mp3-32k-0000.wav")
    assert restored.shape == degraded.shape
    table = (out / "table.md").read_text()
    assert table.startswith("# Evaluation of set\n") and str(testset) not in table  # the set's name, not its path
    assert "| `input` |" in table and "| `tiny` |" in table and "Vocal (n=2)" in table and "Single Stem" in table
    assert "RTF (ms, cpu)" in table
    cross = table.split("Per bitrate and category")[1]
    row_32k = next(line for line in cross.splitlines() if line.startswith("| 32 | `input` |"))
    *per_category, overall = (cell.strip() for cell in row_32k.strip(" |").split("|")[2:])
    assert len(per_category) == len({r["category"] for r in rows})
    inputs_32k = [r for r in rows if r["system"] == "input" and r["bitrate"] == 32]
    expected_cell = [sum(r[m] for r in inputs_32k) / len(inputs_32k) for m in ("si_snr", "visqol", "lsd_hf")]
    assert [float(v) for v in overall.split("/")] == pytest.approx(expected_cell, abs=0.006)
    assert (out / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "results.csv").read_text().count("\n") == 9


def test_evaluate_resumes_from_its_cache(tiny_run):
    import json

    testset, checkpoint, out = tiny_run
    cache = out / "cache.jsonl"
    lines = cache.read_text().splitlines()
    assert len(lines) == 8
    assert _apollo("evaluate", "--data", testset, "--checkpoint", checkpoint, "-o", out, "--jobs", 1, "-q",
                   "--no-visqol", "--rtf-iterations", 0) == 0
    # --no-visqol changes the fingerprint: every row is rescored once, then reused
    assert len(cache.read_text().splitlines()) == 16
    assert "rtf_ms" in json.loads((out / "results.json").read_text())["systems"]["tiny"]  # kept from run 1
    assert _apollo("evaluate", "--data", testset, "--checkpoint", checkpoint, "-o", out, "--jobs", 1, "-q",
                   "--no-visqol", "--rtf-iterations", 0) == 0
    assert len(cache.read_text().splitlines()) == 16


def test_evaluate_refuses_to_mix_outputs_of_two_checkpoints(tiny_run, tmp_path, capsys):
    testset, _, out = tiny_run
    other = _tiny_checkpoint(tmp_path / "tiny", seed=1)  # same folder name, different weights
    assert _apollo("evaluate", "--data", testset, "--checkpoint", other, "-o", out, "-q") == 1
    err = capsys.readouterr().err.strip()
    assert "another checkpoint" in err and len(err.splitlines()) == 1


def test_evaluate_keeps_each_precision_in_its_own_system(tiny_run, tmp_path, capsys):
    import json
    import shutil

    testset, checkpoint, shared = tiny_run
    out = tmp_path / "out"  # the shared run's fp32 outputs, in a folder of this test's own
    shutil.copytree(shared / "restored", out / "restored")
    argv = ["evaluate", "--data", testset, "--checkpoint", checkpoint, "-o", out, "-q", "--precision", "int8"]
    assert _apollo(*argv) == 1  # the fp32 outputs of this checkpoint are not reused as int8 ones
    err = capsys.readouterr().err.strip()
    assert "holds fp32 outputs" in err and len(err.splitlines()) == 1
    assert _apollo(*argv, "--name", "tiny-int8", "--no-visqol", "--rtf-iterations", 0, "--jobs", 1) == 0
    assert json.loads((out / "results.json").read_text())["systems"]["tiny-int8"]["precision"] == "int8"
    assert json.loads((out / "restored" / "tiny" / "source.json").read_text())["precision"] == "fp32"


def test_compare_merges_systems_and_keeps_one_baseline(tiny_run, tmp_path):
    """The second run's model is residual and untrained, i.e. the identity: through restoration, files and
    scoring it must score exactly like the unprocessed input."""
    import json

    from apollo_restore.evaluate.metrics import METRICS

    testset, _, out = tiny_run
    identity = _tiny_checkpoint(tmp_path / "identity", residual=True)
    out2 = tmp_path / "run2"
    assert _apollo("evaluate", "--data", testset, "--checkpoint", identity, "-o", out2, "-q", "--no-visqol",
                   "--jobs", 1, "--rtf-iterations", 0, "--compare", out / "results.json") == 0
    rows = json.loads((out2 / "results.json").read_text())["rows"]
    assert sorted({r["system"] for r in rows}) == ["identity", "input", "tiny"]
    assert "| `tiny` |" in (out2 / "table.md").read_text()
    by = {(r["id"], r["system"]): r for r in rows}
    for example_id in {r["id"] for r in rows}:
        for name in set(METRICS) - {"visqol"}:
            expected = by[(example_id, "input")][name]
            if expected is None:
                assert by[(example_id, "identity")][name] is None
            else:
                assert by[(example_id, "identity")][name] == pytest.approx(expected, abs=0.05), name


def test_pairs_folder_scores_external_systems(tmp_path):
    import json

    from apollo_restore.audio import read_audio, write_audio

    testset = _write_testset(tmp_path / "set", bitrates=(64,))
    pairs = tmp_path / "pairs"
    for path in (testset / "clean").iterdir():
        clean, _ = read_audio(path)
        write_audio(pairs / "reference" / path.name, clean, SR)
        write_audio(pairs / "degraded" / f"{path.stem}.wav", read_audio(testset / "degraded" / path.name)[0], SR)
        write_audio(pairs / "oracle" / f"{path.stem}.wav", clean, SR, subtype="FLOAT")
        half = np.concatenate([clean, np.zeros((2, 100), np.float32)], axis=1) * 0.5  # longer: tail cropped
        write_audio(pairs / "half" / f"{path.stem}.wav", half, SR, subtype="FLOAT")
    (pairs / "metadata.csv").write_text("id,bitrate,category\nmp3-64k-0000,64,vocal\n")
    out = tmp_path / "out"
    assert _apollo("evaluate", "--pairs", pairs, "-o", out, "-q", "--no-visqol", "--jobs", 1) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    by = {(r["id"], r["system"]): r for r in rows}
    assert len(rows) == 6
    assert by[("mp3-64k-0000", "oracle")]["sdr"] > 90 and by[("mp3-64k-0000", "oracle")]["lsd"] < 0.01
    assert by[("mp3-64k-0000", "half")]["si_snr"] > 90  # scale-invariant
    assert 0.1 < by[("mp3-64k-0000", "half")]["lsd"] <= 2 * np.log10(2) + 1e-6  # -6 dB, except floored bins
    assert by[("mp3-64k-0000", "input")]["bitrate"] == 64 and by[("mp3-64k-0001", "input")]["bitrate"] == 0
    assert by[("mp3-64k-0001", "input")]["category"] == "unknown"


def test_pairs_folder_errors_are_one_line(tmp_path, capsys):
    from apollo_restore.audio import write_audio

    pairs = tmp_path / "pairs"
    write_audio(pairs / "reference" / "a.wav", _clip(0), SR)
    assert _apollo("evaluate", "--pairs", pairs, "-o", tmp_path / "out", "-q") == 1
    assert "degraded/" in capsys.readouterr().err
    write_audio(pairs / "degraded" / "a.wav", _clip(0)[:, : SR // 2], SR)
    assert _apollo("evaluate", "--pairs", pairs, "-o", tmp_path / "out", "-q", "--jobs", 1) == 1
    err = capsys.readouterr().err.strip()
    assert "shorter than its reference" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "results.json").exists()


def test_report_aggregates_by_hand():
    from apollo_restore.evaluate.report import aggregate, table2_markdown

    nan = float("nan")
    rows = [
        {"id": "a", "system": "s", "bitrate": 32, "category": "vocal", "sdr": 10.0, "si_snr": 8.0, "visqol": 3.0,
         "lsd": 1.0, "lsd_hf": nan},
        {"id": "b", "system": "s", "bitrate": 32, "category": "multi_stem", "sdr": 20.0, "si_snr": 18.0,
         "visqol": 4.0, "lsd": 2.0, "lsd_hf": 3.0},
    ]
    overall = aggregate(rows, None)["s"]["overall"]
    assert overall["sdr"] == 15.0 and overall["lsd_hf"] == 3.0 and overall["n"] == 2
    assert aggregate(rows, "category")["s"]["vocal"]["si_snr"] == 8.0
    line = table2_markdown(rows, {"s": {"params": 16_539_308}}).splitlines()[2]
    assert line == "| `s` | 10.00/8.00/3.00 | 20.00/18.00/4.00 | 15.00/13.00/3.50 | 16.54 | – |"


def test_cli_spectrogram_of_input_restored_reference(tmp_path, capsys):
    from apollo_restore.audio import write_audio

    clip = _clip(3)
    write_audio(tmp_path / "ref.flac", clip, SR)
    write_audio(tmp_path / "low.wav", clip[:, ::2], SR // 2)  # shown at the highest rate of the files
    out = tmp_path / "spec.png"
    assert _apollo("spectrogram", tmp_path / "low.wav", tmp_path / "ref.flac", "-o", out, "--labels", "in",
                   "ref", "--duration", "0.5") == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert _apollo("spectrogram", tmp_path / "missing.wav", "-o", tmp_path / "x.png") == 1
    assert _apollo("spectrogram", tmp_path / "ref.flac", "-o", tmp_path / "x.png", "--start", "5") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such file" in err[0] and "shorter than --start" in err[1]
    assert not (tmp_path / "x.png").exists()
