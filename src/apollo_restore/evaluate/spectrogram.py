"""Side-by-side log-magnitude spectrogram figures (input / restored / reference), written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from apollo_restore.errors import ApolloError
from apollo_restore.evaluate.metrics import HOP, N_FFT
from apollo_restore.files import atomic_write
from apollo_restore.stft import bin_frequencies, power_spectrogram

#: colour range below the loudest bin of all panels
DYNAMIC_RANGE_DB = 100.0


def _mono(audio: np.ndarray, name: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    if audio.ndim != 1 or audio.size == 0:
        raise ApolloError(f"spectrogram panel {name!r}: expected [channels, samples] or [samples] audio")
    if not np.isfinite(audio).all():
        raise ApolloError(f"spectrogram panel {name!r}: contains NaN or infinite samples")
    return audio


def save_figure(figure, out_path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write a matplotlib ``Figure`` to ``out_path`` (format from its suffix) via a temporary file."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out_path = Path(out_path)
    canvas = FigureCanvasAgg(figure)
    fmt = out_path.suffix.lstrip(".").lower()
    if fmt not in canvas.get_supported_filetypes():
        raise ApolloError(f"{out_path}: unsupported figure format (use .png, .pdf or .svg)")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ApolloError(f"{out_path.parent}: cannot create folder ({error.strerror})") from None
    atomic_write(out_path, lambda tmp: figure.savefig(tmp, format=fmt, dpi=dpi))
    return out_path


def plot_spectrograms(
    panels: list[tuple[str, np.ndarray]],
    sample_rate: int,
    out_path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Plot ``(label, audio)`` panels side by side; each audio is ``[channels, samples]`` or ``[samples]``.

    Channels are averaged to mono; the image is 10*log10 power in dB on a colour scale shared by all panels
    (``DYNAMIC_RANGE_DB`` below the loudest bin), frequency 0 to ``sample_rate / 2`` in kHz, time in s.
    Returns the written path.
    """
    from matplotlib.figure import Figure

    if not panels:
        raise ApolloError("spectrogram: nothing to plot")
    if sample_rate <= 0:
        raise ApolloError(f"spectrogram: sample rate must be positive, got {sample_rate}")
    spectra = []
    for name, audio in panels:
        power = power_spectrogram(_mono(audio, name), N_FFT, HOP)
        spectra.append(10.0 * np.log10(np.maximum(power, 1e-20)).T)  # [bins, frames]
    vmax = max(float(s.max()) for s in spectra)
    vmin = vmax - DYNAMIC_RANGE_DB

    khz = bin_frequencies(sample_rate, N_FFT) / 1000.0
    figure = Figure(figsize=(4.2 * len(panels) + 1.2, 4.2), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    image = None
    for ax, (name, _), spec in zip(axes, panels, spectra, strict=True):
        seconds = spec.shape[1] * HOP / sample_rate
        image = ax.imshow(
            spec, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
            extent=(0.0, seconds, 0.0, float(khz[-1])), interpolation="nearest",
        )
        ax.set_title(name)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (kHz)")
    figure.colorbar(image, ax=list(axes), label=f"power (dBFS, {N_FFT}-point STFT)")
    if title:
        figure.suptitle(title)
    return save_figure(figure, out_path)
