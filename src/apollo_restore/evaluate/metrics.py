"""Restoration metrics as the reference evaluation defines them, plus log-spectral distance.

All functions take a reference and an estimate shaped ``[channels, samples]`` (or ``[samples]``) at one
sample rate, with equal shapes. SDR and SI-SNR are computed per channel with ``fast_bss_eval`` on float64
numpy arrays (its torch path crashes in ``lu_solve`` on CPU) and averaged over the channels whose reference
is not silent; both are clamped to +-``CLAMP_DB`` so identical or silent signals give finite numbers.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from apollo_restore.audio import as_channels_first, resample
from apollo_restore.errors import ApolloError
from apollo_restore.stft import bin_frequencies, power_spectrogram

#: short-time analysis of LSD, the cut-off estimate and the plots: 2048-point Hann window, hop 512 (46 ms / 11.6 ms
#: at 44.1 kHz), zero-padded centred frames (`apollo_restore.stft`)
N_FFT = 2048
HOP = 512
#: BSS-eval distortion filter length in taps (the reference's value)
SDR_FILTER_LENGTH = 512
#: SDR / SI-SNR are clamped to [-CLAMP_DB, CLAMP_DB] (identical signals would be +inf)
CLAMP_DB = 100.0
#: ViSQOL audio mode works at 48 kHz mono only
VISQOL_RATE = 48000
#: power floor of LSD (1e-10 of a full-scale sine: -100 dBFS), so silence on both sides costs nothing
LSD_FLOOR = 1e-10
#: codec cut-off estimation (see codec_cutoff_hz): a degraded bin this far (dB) below the reference counts
#: as removed, and levels must be this far above the degraded signal's floor to count at all
CUTOFF_DROP_DB = -20.0
CUTOFF_ABOVE_FLOOR_DB = 10.0
#: bins of the median smoothing applied before locating the cut-off (~250 Hz at 44.1 kHz)
CUTOFF_SMOOTH_BINS = 12
#: envelope correlation: frame length (s), and frames whose reference band energy is more than this (dB) under
#: the band's loudest frame are left out (silence against silence says nothing about following the music)
ENVELOPE_FRAME_SECONDS = 0.02
ENVELOPE_RANGE_DB = 60.0
#: metric names in report order; "lsd_hf" is LSD above the codec cut-off, "env_corr" the envelope correlation
#: of the band above it
METRICS = ("sdr", "si_snr", "visqol", "lsd", "lsd_hf", "env_corr")


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return float64 ``[channels, samples]`` copies of both signals."""
    reference, _ = as_channels_first(reference)
    estimate, _ = as_channels_first(estimate)
    if reference.shape != estimate.shape:
        raise ApolloError(f"reference {list(reference.shape)} and estimate {list(estimate.shape)} differ in shape "
                          "([channels, samples]); signals must be aligned and of equal length")
    if not (np.isfinite(reference).all() and np.isfinite(estimate).all()):
        raise ApolloError("metrics: signals contain NaN or infinite samples")
    return reference.astype(np.float64), estimate.astype(np.float64)


def _audible_channels(reference: np.ndarray) -> np.ndarray:
    keep = np.any(reference != 0.0, axis=-1)
    if not keep.any():
        raise ApolloError("metrics: the reference is silent, SDR/SI-SNR are undefined")
    return keep


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """BSS-eval SDR in dB (512-tap distortion filter), per channel, averaged."""
    import fast_bss_eval

    ref, est = _pair(reference, estimate)
    keep = _audible_channels(ref)
    try:
        values = fast_bss_eval.sdr(ref[keep], est[keep], filter_length=SDR_FILTER_LENGTH, clamp_db=CLAMP_DB)
    except np.linalg.LinAlgError:
        raise ApolloError("metrics: SDR is undefined here (the reference's autocorrelation is singular, "
                          "e.g. a pure tone or a near-empty clip)") from None
    return float(np.mean(values))


def si_snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SNR (SI-SDR, no mean removal, as ``fast_bss_eval.si_sdr``) in dB, per channel, averaged."""
    import fast_bss_eval

    ref, est = _pair(reference, estimate)
    keep = _audible_channels(ref)
    return float(np.mean(fast_bss_eval.si_sdr(ref[keep], est[keep], clamp_db=CLAMP_DB)))


@cache
def _visqol_api():
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="audio")
    return api


def visqol(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """ViSQOL MOS-LQO (audio mode, 1 to ~4.73): both signals mixed to mono and resampled to 48 kHz."""
    ref, est = _pair(reference, estimate)
    ref48 = resample(ref.mean(axis=0, keepdims=True), sample_rate, VISQOL_RATE)[0].astype(np.float64)
    est48 = resample(est.mean(axis=0, keepdims=True), sample_rate, VISQOL_RATE)[0].astype(np.float64)
    if not ref48.any():
        raise ApolloError("metrics: the reference is silent, ViSQOL is undefined")
    try:
        return float(_visqol_api().measure_from_arrays(ref48, est48, VISQOL_RATE).moslqo)
    except (ValueError, RuntimeError, IndexError) as error:
        raise ApolloError(f"ViSQOL failed ({error})") from None


def _log_power(audio: np.ndarray) -> np.ndarray:
    """log10 of the floored STFT power: ``[channels, samples]`` -> ``[channels, frames, bins]``."""
    return np.log10(np.maximum(power_spectrogram(audio, N_FFT, HOP), LSD_FLOOR))


def _lsd(log_ref: np.ndarray, log_est: np.ndarray, sample_rate: int, min_hz: float) -> float:
    band = bin_frequencies(sample_rate, N_FFT) >= min_hz
    if not band.any():
        raise ApolloError(f"LSD: no frequency at or above {min_hz:.0f} Hz at {sample_rate} Hz")
    per_frame = np.sqrt(np.mean((log_ref[..., band] - log_est[..., band]) ** 2, axis=-1))  # [channels, frames]
    return float(per_frame.mean())


def lsd(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, min_hz: float = 0.0) -> float:
    """Log-spectral distance over bins at or above ``min_hz``, per channel, averaged.

    ``mean_frames sqrt(mean_bins (log10 P_ref - log10 P_est)^2)`` with powers of a 2048-point STFT floored at
    ``LSD_FLOOR``. Gain-sensitive: compare signals at the same level. 0 for identical signals.
    """
    ref, est = _pair(reference, estimate)
    return _lsd(_log_power(ref), _log_power(est), sample_rate, min_hz)


def envelope_correlation(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, cutoff_hz: float) -> float:
    """How well the band above ``cutoff_hz`` follows the music: Pearson correlation over 20 ms frames of the
    band's energy in dB (channels summed), reference against estimate; NaN when there is no such band or fewer
    than 3 frames where the reference band sounds (within ``ENVELOPE_RANGE_DB`` of its loudest frame).

    A written band that is stationary (the same level in every frame) scores near 0, one that rises and falls
    with the original's scores near 1, whatever its overall level.
    """
    ref, est = _pair(reference, estimate)
    n_fft = max(2, round(ENVELOPE_FRAME_SECONDS * sample_rate))
    band = bin_frequencies(sample_rate, n_fft) >= cutoff_hz
    if cutoff_hz >= sample_rate / 2 or not band.any():
        return float("nan")
    energy_ref = power_spectrogram(ref, n_fft, n_fft)[..., band].sum(axis=(0, -1))  # [frames]
    energy_est = power_spectrogram(est, n_fft, n_fft)[..., band].sum(axis=(0, -1))
    sounding = energy_ref > energy_ref.max() * 10 ** (-ENVELOPE_RANGE_DB / 10)
    if sounding.sum() < 3 or energy_ref.max() <= 0:
        return float("nan")
    floor = energy_ref.max() * 1e-12
    db_ref = 10 * np.log10(energy_ref[sounding] + floor)
    db_est = 10 * np.log10(energy_est[sounding] + floor)
    if db_ref.std() == 0 or db_est.std() == 0:
        return 0.0
    return float(np.corrcoef(db_ref, db_est)[0, 1])


def _smooth_db(power: np.ndarray) -> np.ndarray:
    """Median over ``CUTOFF_SMOOTH_BINS`` neighbouring bins of ``10 log10 power`` (floored at 1e-20)."""
    level = 10 * np.log10(power + 1e-20)
    padded = np.pad(level, CUTOFF_SMOOTH_BINS // 2, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, CUTOFF_SMOOTH_BINS + 1), axis=-1)


def codec_cutoff_hz(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Frequency above which the codec removed the signal, estimated from long-term spectra.

    Long-term (time- and channel-averaged) power spectra in dB are median-smoothed over
    ``CUTOFF_SMOOTH_BINS``. The degraded signal's floor is its 5th-percentile bin level. A bin *passes* when
    the degraded level is above that floor by ``CUTOFF_ABOVE_FLOOR_DB`` and within ``CUTOFF_DROP_DB`` of the
    reference; it was *removed* when the reference is above the floor by ``CUTOFF_ABOVE_FLOOR_DB`` but the
    degraded level is not within ``CUTOFF_DROP_DB``. The cut-off is the upper edge of the highest passing bin,
    or ``sample_rate / 2`` when no bin was removed. Robust to references that hold only hiss up high.
    """
    ref, deg = _pair(reference, degraded)
    level_ref = _smooth_db(power_spectrogram(ref, N_FFT, HOP).mean(axis=(0, 1)))
    level_deg = _smooth_db(power_spectrogram(deg, N_FFT, HOP).mean(axis=(0, 1)))
    floor = float(np.percentile(level_deg, 5)) + CUTOFF_ABOVE_FLOOR_DB
    close = level_deg > level_ref + CUTOFF_DROP_DB
    if not np.any(~close & (level_ref > floor)):
        return float(sample_rate / 2)
    passed = np.flatnonzero(close & (level_deg > floor))
    if passed.size == 0:
        return 0.0
    return float(bin_frequencies(sample_rate, N_FFT)[min(int(passed[-1]) + 1, level_deg.size - 1)])


def score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, cutoff_hz: float,
          which: tuple[str, ...] = METRICS) -> dict[str, float]:
    """The metrics named in ``which`` (default all of ``METRICS``) for one estimate; the others are NaN.

    ``lsd_hf`` and ``env_corr`` are NaN when the cut-off is at Nyquist (nothing was removed, so there is no
    high band to score).
    """
    unknown = set(which) - set(METRICS)
    if unknown:
        raise ApolloError(f"unknown metric(s) {sorted(unknown)}; known: {', '.join(METRICS)}")
    ref, est = _pair(reference, estimate)
    has_band = cutoff_hz < sample_rate / 2
    log_ref, log_est = (_log_power(ref), _log_power(est)) if {"lsd", "lsd_hf"} & set(which) else (None, None)
    compute = {
        "sdr": lambda: sdr(ref, est),
        "si_snr": lambda: si_snr(ref, est),
        "visqol": lambda: visqol(ref, est, sample_rate),
        "lsd": lambda: _lsd(log_ref, log_est, sample_rate, 0.0),
        "lsd_hf": lambda: _lsd(log_ref, log_est, sample_rate, cutoff_hz) if has_band else np.nan,
        "env_corr": lambda: envelope_correlation(ref, est, sample_rate, cutoff_hz),
    }
    return {name: compute[name]() if name in which else np.nan for name in METRICS}
