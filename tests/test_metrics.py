"""Metric functions against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from apollo_restore.errors import ApolloError
from apollo_restore.evaluate import metrics

SR = 44100


def _noise(shape, seed=0, scale=0.1):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _si_sdr_by_hand(ref: np.ndarray, est: np.ndarray) -> float:
    ref, est = ref.astype(np.float64), est.astype(np.float64)
    target = (ref @ est) / (ref @ ref) * ref
    return float(10 * np.log10((target @ target) / ((est - target) @ (est - target))))


def test_identical_signals_hit_the_clamp_and_zero_lsd():
    x = _noise((2, SR))
    assert metrics.sdr(x, x) == pytest.approx(metrics.CLAMP_DB, abs=1e-3)
    assert metrics.si_snr(x, x) == pytest.approx(metrics.CLAMP_DB, abs=1e-3)
    assert metrics.lsd(x, x, SR) == 0.0


def test_visqol_of_identical_audio_is_its_maximum():
    t = np.arange(SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + _noise(SR, scale=0.02)).astype(np.float32)
    assert metrics.visqol(x, x, SR) == pytest.approx(4.732, abs=2e-3)
    assert metrics.visqol(x, x + _noise(SR, seed=1, scale=0.05), SR) < 4.0


def test_one_sample_shift_of_a_sine():
    """SI-SNR of sin(wn) against sin(w(n-1)) over whole periods is 20 log10|cot w|; the 512-tap SDR filter
    absorbs the shift."""
    freq = 1000.0  # exactly 1000 periods in one second: the circular shift is an exact delay
    x = np.sin(2 * np.pi * freq * np.arange(SR) / SR)
    shifted = np.roll(x, 1)
    omega = 2 * np.pi * freq / SR
    expected = 20 * np.log10(abs(1 / np.tan(omega)))
    assert expected == pytest.approx(16.87, abs=0.01)
    assert metrics.si_snr(x, shifted) == pytest.approx(expected, abs=1e-3)
    assert metrics.sdr(x, shifted) > 50.0


def test_sdr_of_additive_independent_noise_is_the_snr():
    ref = _noise((1, 3 * SR), seed=2)
    est = ref + _noise((1, 3 * SR), seed=3, scale=0.01)  # 20 dB below
    assert metrics.sdr(ref, est) == pytest.approx(20.0, abs=0.2)


def test_per_channel_values_are_averaged_and_silent_channels_skipped():
    ref = _noise((2, SR), seed=4)
    est = ref + np.stack([_noise(SR, seed=5, scale=0.03), _noise(SR, seed=6, scale=0.003)])
    by_hand = [_si_sdr_by_hand(ref[c], est[c]) for c in range(2)]
    assert by_hand[1] - by_hand[0] == pytest.approx(20.0, abs=0.5)
    assert metrics.si_snr(ref, est) == pytest.approx(np.mean(by_hand), abs=1e-4)
    ref[1] = 0.0
    assert metrics.si_snr(ref, est) == pytest.approx(by_hand[0], abs=1e-4)


def test_lsd_of_a_gain_change_is_twice_its_log10():
    x = _noise((2, SR))
    gain = 10 ** -0.5  # -10 dB: log10 power differs by exactly 1 in every bin
    assert metrics.lsd(x, gain * x, SR) == pytest.approx(1.0, abs=1e-4)  # a few noise bins touch the floor
    assert metrics.lsd(x, gain * x, SR, min_hz=15000.0) == pytest.approx(1.0, abs=1e-4)


def test_lsd_above_the_cutoff_isolates_the_missing_band():
    """With the band below 5 kHz intact, each frame's full-band LSD is sqrt(fraction of bins >= 5 kHz) times
    its LSD above 5 kHz."""
    from apollo_restore.degrade import lowpass
    from apollo_restore.evaluate.metrics import N_FFT
    from apollo_restore.stft import bin_frequencies

    x = _noise((1, SR))
    low = lowpass(x, SR, 5000.0)
    high_band = metrics.lsd(x, low, SR, min_hz=5000.0)
    assert high_band > 4.0  # ~-45 dBFS noise bins against the -100 dBFS floor
    fraction = np.mean(bin_frequencies(SR, N_FFT) >= 5000.0)
    assert metrics.lsd(x, low, SR) / high_band == pytest.approx(np.sqrt(fraction), abs=2e-3)


@pytest.mark.parametrize(("bitrate", "low", "high"), [(32, 5200, 5800), (128, 16400, 17200)])
def test_codec_cutoff_of_real_mp3_matches_lame_lowpass(bitrate, low, high):
    from apollo_restore.degrade import degrade

    x = _noise((2, 2 * SR), seed=7)
    y = degrade(x, SR, "mp3", bitrate)
    assert low <= metrics.codec_cutoff_hz(x, y, SR) <= high
    assert metrics.codec_cutoff_hz(x, x, SR) == SR / 2


def test_score_has_every_metric_and_marks_no_high_band_as_nan():
    x = _noise((1, SR))
    result = metrics.score(x, 0.5 * x, SR, cutoff_hz=SR / 2, which=("sdr", "si_snr", "lsd", "lsd_hf", "env_corr"))
    assert set(result) == set(metrics.METRICS)
    assert np.isnan(result["visqol"]) and np.isnan(result["lsd_hf"])
    assert result["lsd"] == pytest.approx(2 * np.log10(2), abs=1e-4)


@pytest.mark.parametrize(
    ("ref", "est"),
    [(np.ones((2, 100)), np.ones((2, 99))), (np.ones((2, 100)), np.ones((1, 100))),
     (np.zeros((1, 100)), np.ones((1, 100))), (np.full((1, 100), np.nan), np.ones((1, 100)))],
)
def test_bad_inputs_are_apollo_errors(ref, est):
    with pytest.raises(ApolloError):
        metrics.si_snr(ref, est)


def test_envelope_correlation_rewards_a_band_that_follows_the_music():
    """A high band whose loudness rises and falls with the original's scores ~1 at any level; a stationary band
    of the same average level scores ~0; no high band (cut-off at Nyquist) is NaN."""
    rng = np.random.default_rng(3)
    t = np.arange(2 * SR) / SR
    envelope = 0.05 + np.abs(np.sin(2 * np.pi * 1.5 * t)) ** 3  # notes coming and going
    freqs = np.fft.rfftfreq(t.size, 1 / SR)

    def high_band(seed: int) -> np.ndarray:
        noise = np.random.default_rng(seed).standard_normal(t.size)
        return np.fft.irfft(np.fft.rfft(noise) * (freqs > 8000), n=t.size)

    low = np.fft.irfft(np.fft.rfft(rng.standard_normal(t.size)) * (freqs < 7000), n=t.size)
    reference = (envelope * (low + 0.1 * high_band(1)))[None]
    following = (envelope * (low + 0.01 * high_band(2)))[None]  # 20 dB quieter, other noise, same envelope
    stationary = (envelope * low + 0.1 * np.sqrt(np.mean(envelope**2)) * high_band(2))[None]
    assert metrics.envelope_correlation(reference, following, SR, 8000.0) > 0.9
    assert abs(metrics.envelope_correlation(reference, stationary, SR, 8000.0)) < 0.3
    assert np.isnan(metrics.envelope_correlation(reference, following, SR, SR / 2))
