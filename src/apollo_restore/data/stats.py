"""How much of a dataset lives above a frequency, before and after the codec (``make-data --report``)."""

from __future__ import annotations

import numpy as np

from apollo_restore.data.mixing import MixConfig, MixtureDataset
from apollo_restore.degrade import degrade


def band_share_db(audio: np.ndarray, sample_rate: int, above_hz: float = 16000.0) -> float:
    """Energy above ``above_hz`` relative to the total of ``[channels, samples]``, in dB (-200 for none)."""
    power = np.abs(np.fft.rfft(audio, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[-1], 1.0 / sample_rate)
    total = float(power.sum())
    return float(10 * np.log10(max(float(power[..., freqs >= above_hz].sum()), 1e-20 * total, 1e-30)
                               / max(total, 1e-30)))


def band_report(config: MixConfig, split: str, clips: int, seed: int = 0,
                above_hz: float = 16000.0) -> dict[str, list[float]]:
    """Share above ``above_hz`` (dB) of ``clips`` real song mixtures and of their codec versions at each
    bitrate of ``config.degrade``: ``{"clean": [...], "mp3-24k": [...], ...}``."""
    real = MixConfig(**{**config.__dict__, "real_mixture_fraction": 1.0})
    dataset = MixtureDataset(real, split, epoch_size=clips, seed=seed)
    report: dict[str, list[float]] = {"clean": []}
    for i in range(clips):
        clean = dataset.draw_clean(np.random.default_rng([seed, i]))[0]
        report["clean"].append(band_share_db(clean, real.sample_rate, above_hz))
        for spec in real.degrade.options():
            coded = degrade(clean, real.sample_rate, spec.codec, spec.bitrate, spec.vbr_quality,
                            spec.cutoff_hz)
            report.setdefault(spec.label, []).append(band_share_db(coded, real.sample_rate, above_hz))
    return report
