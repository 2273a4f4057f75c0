"""Spectrogram figures, reports and the end-to-end `apollo evaluate` run on a tiny test set."""

from __future__ import annotations

import numpy as np
import pytest

from apollo_restore.errors import ApolloError
from apollo_restore.evaluate.spectra import bin_frequencies, power_spectrogram
from apollo_restore.evaluate.spectrogram import plot_spectrograms

SR = 44100


def test_power_spectrogram_full_scale_sine_peaks_at_0_dbfs():
    t = np.arange(SR) / SR
    freq = 46 * SR / 2048  # centred on bin 46: no scalloping loss
    power = power_spectrogram(np.sin(2 * np.pi * freq * t))
    assert power.shape == (1 + SR // 512, 1025)
    peak_bin = int(np.argmax(power[40]))
    assert peak_bin == 46 and bin_frequencies(SR)[peak_bin] == pytest.approx(freq)
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
