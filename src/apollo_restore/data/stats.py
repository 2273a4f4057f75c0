"""Measures of how music-like a clip is, above all in the high band (``apollo data-stats``, ``make-data --report``).

:func:`clip_stats` gives one clip's realism statistics: the energy of each 1/3-octave band from 2 to 20 kHz
relative to the clip's total, the share of 100 ms frames with content above 16 kHz, the top octave's
spectral flatness and how fast its level changes, the crest factor, the integrated loudness (ITU-R BS.1770,
pyloudnorm) at a 0 dBFS peak, and the stereo width. :func:`band_report` measures a dataset's energy above
16 kHz before and after the codec.
"""

from __future__ import annotations

import numpy as np

from apollo_restore.data.mixing import MixConfig, MixtureDataset
from apollo_restore.degrade import degrade

#: centres of the 1/3-octave bands (IEC 61260 nominal) from 2 to 20 kHz
THIRD_OCTAVE_HZ = (2000, 2500, 3150, 4000, 5000, 6300, 8000, 10000, 12500, 16000, 20000)
HF_HZ = 16000.0
#: frames whose level is this far below the clip's loudest frame are silence and not counted
ACTIVE_DB = 60.0
#: a 100 ms frame has content above 16 kHz when its smoothed spectrum there comes within this of its peak
HF_RANGE_DB = 60.0
SMOOTH_HZ = 200.0
WELCH_FFT = 8192  # long-term spectrum: 5.4 Hz bins
FLATNESS_FFT = 2048  # 46 ms Hann frames, hop 1024 (23 ms), for the top octave's flatness and level changes
#: a frame's top octave holds content when its energy is within this of the frame's total energy
TOP_RANGE_DB = 70.0
WIDTH_FLOOR_DB = -60.0
FLOOR = 1e-12  # relative power floor (-120 dB re the clip's mean frame power): no log(0) on empty bands
#: name -> (short title with unit, description) of every scalar statistic, in report order
SCALARS = {
    "above16k_db": ("energy above 16 kHz (dB re total)", "energy above 16 kHz relative to the clip's total (dB)"),
    "hf_frames": ("frames with content above 16 kHz (%)",
                  "share of 100 ms frames with content above 16 kHz within 60 dB of the frame's peak (%)"),
    "top_flatness": ("top-octave flatness", "spectral flatness of the top octave (11-22 kHz), median over frames"),
    "top_change_db": ("top-octave change per 23 ms (dB)",
                      "top-octave level change between consecutive 23 ms frames, mean absolute step (dB)"),
    "crest_db": ("crest factor (dB)", "crest factor, sample peak over RMS (dB)"),
    "loudness_lufs": ("loudness at 0 dBFS peak (LUFS)",
                      "integrated loudness (ITU-R BS.1770, pyloudnorm) at a 0 dBFS sample peak (LUFS)"),
    "width_db": ("stereo width S/M (dB)", "stereo width: side over mid energy, floored at -60 (stereo files, dB)"),
}


def band_share_db(audio: np.ndarray, sample_rate: int, above_hz: float = HF_HZ) -> float:
    """Energy above ``above_hz`` relative to the total of ``[channels, samples]``, in dB (-200 for none)."""
    power = np.abs(np.fft.rfft(audio, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[-1], 1.0 / sample_rate)
    total = float(power.sum())
    return float(10 * np.log10(max(float(power[..., freqs >= above_hz].sum()), 1e-20 * total, 1e-30)
                               / max(total, 1e-30)))


def _frames_power(audio: np.ndarray, size: int, hop: int) -> np.ndarray:
    """Hann-windowed power spectra of ``[channels, samples]``, channels averaged: ``[frames, size // 2 + 1]``
    (a clip shorter than ``size`` is zero-padded to one frame)."""
    count = max(1, 1 + (audio.shape[1] - size) // hop)
    padded = np.pad(audio, ((0, 0), (0, max(0, size - audio.shape[1]))))
    index = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
    frames = padded[:, index] * np.hanning(size + 2)[1:-1].astype(np.float32)  # [channels, frames, size]
    return (np.abs(np.fft.rfft(frames, axis=-1)) ** 2).mean(axis=0)


def _active(power: np.ndarray) -> np.ndarray:
    """Frames within ACTIVE_DB of the loudest (all frames if that leaves none)."""
    level = power.sum(axis=1)
    active = level > level.max() * 10 ** (-ACTIVE_DB / 10)
    return active if active.any() else np.ones_like(active)


def long_term_spectrum(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectrum of ``[channels, samples]`` (Hann, WELCH_FFT points, half overlap, channels
    summed): (frequencies, power per bin). Hann side lobes keep a loud low band from leaking into an
    empty high band (a whole-clip FFT leaks about -75 dB)."""
    power = _frames_power(np.asarray(audio, np.float64), WELCH_FFT, WELCH_FFT // 2).mean(axis=0)
    return np.fft.rfftfreq(WELCH_FFT, 1.0 / sample_rate), power * np.atleast_2d(audio).shape[0]


def edge_hz(audio: np.ndarray, sample_rate: int, range_db: float = 60.0) -> float:
    """The highest frequency where the long-term spectrum (smoothed over 200 Hz) is within ``range_db`` of
    its peak, ignoring frequencies below 30 Hz (the "edge60" of the real-music manifest)."""
    freqs, power = long_term_spectrum(audio, sample_rate)
    width = max(1, round(SMOOTH_HZ / (freqs[1] - freqs[0])))
    smooth = np.convolve(power, np.ones(width) / width, "same")
    keep = freqs > 30
    level = smooth[keep]
    return float(freqs[keep][level >= level.max() * 10 ** (-range_db / 10)].max()) if level.max() > 0 else 0.0


def third_octave_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Energy of each THIRD_OCTAVE_HZ band (edges at 2^(+-1/6), cut at Nyquist) relative to the clip's
    total, in dB ``[11]``."""
    freqs, power = long_term_spectrum(audio, sample_rate)
    total = max(float(power.sum()), 1e-30)
    centres = np.asarray(THIRD_OCTAVE_HZ, np.float64)
    low, high = centres * 2 ** (-1 / 6), np.minimum(centres * 2 ** (1 / 6), sample_rate / 2 + 1)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    energy = cumulative[np.searchsorted(freqs, high)] - cumulative[np.searchsorted(freqs, low)]
    return 10 * np.log10(np.maximum(energy, total * FLOOR) / total)


def share_above_db(audio: np.ndarray, sample_rate: int, above_hz: float = HF_HZ) -> float:
    """Energy above ``above_hz`` relative to the total, from the long-term spectrum, in dB (floor -120)."""
    freqs, power = long_term_spectrum(audio, sample_rate)
    total = max(float(power.sum()), 1e-30)
    return float(10 * np.log10(max(float(power[freqs >= above_hz].sum()), total * FLOOR) / total))


def hf_frame_share(audio: np.ndarray, sample_rate: int) -> float:
    """Share (%) of active 100 ms frames whose spectrum (smoothed over 200 Hz) comes within HF_RANGE_DB of
    the frame's peak somewhere above 16 kHz."""
    size = round(0.1 * sample_rate)
    power = _frames_power(audio, size, size)
    active = _active(power)
    width = max(1, round(SMOOTH_HZ * size / sample_rate))
    kernel = np.ones(width) / width
    smooth = np.apply_along_axis(np.convolve, 1, power[active], kernel, "same")
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    floor = smooth.max(axis=1) * 10 ** (-HF_RANGE_DB / 10)
    return float(100.0 * np.mean(smooth[:, freqs >= HF_HZ].max(axis=1) >= floor))


def top_octave_stats(audio: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(median spectral flatness of the top octave over active frames whose top octave holds content
    (within TOP_RANGE_DB of the frame's energy), mean |level step| in dB of the top octave between
    consecutive active 23 ms frames, its level floored TOP_RANGE_DB under the clip's mean frame energy);
    NaN for both when no frame has top-octave content (an empty band is neither flat nor tonal)."""
    power = _frames_power(audio, FLATNESS_FFT, FLATNESS_FFT // 2)
    freqs = np.fft.rfftfreq(FLATNESS_FFT, 1.0 / sample_rate)
    top, total = power[:, freqs >= sample_rate / 4], power.sum(axis=1)
    energy = top.sum(axis=1)
    active = _active(power)
    content = active & (energy > total * 10 ** (-TOP_RANGE_DB / 10))
    if not content.any():
        return float("nan"), float("nan")
    floored = top[content] + total.mean() * FLOOR
    flatness = np.exp(np.log(floored).mean(axis=1)) / floored.mean(axis=1)
    level = 10 * np.log10(energy + total.mean() * 10 ** (-TOP_RANGE_DB / 10))
    steps = np.abs(np.diff(level))[active[1:] & active[:-1] & (content[1:] | content[:-1])]
    return float(np.median(flatness)), float(np.mean(steps)) if steps.size else float("nan")


def loudness_at_full_scale(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS, BS.1770 via pyloudnorm) of the clip scaled to a 0 dBFS sample peak; mono
    is measured as dual mono (two loudspeakers), as it is played. -70 (the absolute gate) for silence."""
    import pyloudnorm

    peak = float(np.abs(audio).max())
    if peak <= 0:
        return -70.0
    stereo = np.repeat(audio, 2, axis=0) if audio.shape[0] == 1 else audio[:2]
    block = min(0.4, stereo.shape[1] / sample_rate)
    value = pyloudnorm.Meter(sample_rate, block_size=block).integrated_loudness((stereo / peak).T.astype(np.float64))
    return float(max(value, -70.0))


def clip_stats(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Every realism statistic of ``[channels, samples]``: ``band_<Hz>`` (dB re total) for each
    THIRD_OCTAVE_HZ band and the SCALARS (``width_db`` is NaN for mono, the top-octave statistics when the
    top octave is empty)."""
    audio = np.asarray(audio, np.float32)
    stats = {f"band_{f}": float(v) for f, v in zip(THIRD_OCTAVE_HZ, third_octave_db(audio, sample_rate),
                                                    strict=True)}
    flatness, change = top_octave_stats(audio, sample_rate)
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    width = float("nan")
    if audio.shape[0] >= 2:
        mid, side = (audio[0] + audio[1]) / 2, (audio[0] - audio[1]) / 2
        ratio = np.sum(np.square(side, dtype=np.float64)) / max(float(np.sum(np.square(mid, dtype=np.float64))), 1e-30)
        width = float(max(10 * np.log10(max(ratio, 1e-30)), WIDTH_FLOOR_DB))
    stats.update({"above16k_db": share_above_db(audio, sample_rate), "hf_frames": hf_frame_share(audio, sample_rate),
                  "top_flatness": flatness,
                  "top_change_db": change,
                  "crest_db": float(20 * np.log10(max(float(np.abs(audio).max()), 1e-12) / max(rms, 1e-12))),
                  "loudness_lufs": loudness_at_full_scale(audio, sample_rate), "width_db": width})
    return stats


def band_report(config: MixConfig, split: str, clips: int, seed: int = 0,
                above_hz: float = HF_HZ) -> dict[str, list[float]]:
    """Share above ``above_hz`` (dB) of ``clips`` real song mixtures and of their codec versions at each
    bitrate of ``config.degrade``: ``{"clean": [...], "mp3-24k": [...], ...}``."""
    real = MixConfig(**{**config.__dict__, "real_mixture_fraction": 1.0})
    dataset = MixtureDataset(real, split, epoch_size=clips, seed=seed)
    report: dict[str, list[float]] = {"clean": []}
    for i in range(clips):
        clean = dataset.draw_clean(np.random.default_rng([seed, i]))[0]
        report["clean"].append(band_share_db(clean, real.sample_rate, above_hz))
        for degradation in real.degrade.options():
            coded = degrade(clean, real.sample_rate, degradation.codec, degradation.bitrate, degradation.vbr_quality,
                            degradation.cutoff_hz)
            report.setdefault(degradation.label, []).append(band_share_db(coded, real.sample_rate, above_hz))
    return report
