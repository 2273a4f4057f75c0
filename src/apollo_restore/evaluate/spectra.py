"""Short-time power spectra shared by the LSD metric and the spectrogram plots (numpy, vectorised)."""

from __future__ import annotations

import numpy as np

#: analysis settings used by LSD and the plots: 2048-point Hann window, hop 512 (46 ms / 11.6 ms at 44.1 kHz)
N_FFT = 2048
HOP = 512


def power_spectrogram(audio: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """|STFT|^2 of ``[..., samples]`` -> float64 ``[..., frames, n_fft // 2 + 1]``.

    Scaled so that a full-scale sine peaks at 1 (0 dBFS). Periodic Hann window, frames centred (zero
    padding of ``n_fft // 2`` on both sides), so a signal of ``L`` samples gives ``1 + L // hop`` frames.
    """
    audio = np.asarray(audio, dtype=np.float64)
    pad = [(0, 0)] * (audio.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    padded = np.pad(audio, pad)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spectrum = np.fft.rfft(frames * window, axis=-1) / (window.sum() / 2)
    return spectrum.real**2 + spectrum.imag**2


def bin_frequencies(sample_rate: int, n_fft: int = N_FFT) -> np.ndarray:
    """Centre frequency in Hz of each of the ``n_fft // 2 + 1`` bins."""
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
