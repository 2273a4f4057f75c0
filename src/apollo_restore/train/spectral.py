"""The STFT shared by the discriminator and the reconstruction loss (periodic Hann, hop n_fft / 2)."""

from __future__ import annotations

import torch


def stft(audio: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Complex STFT of ``audio [..., samples]`` -> ``[..., n_fft // 2 + 1, frames]``, computed in float32.

    ``center=True`` (reflect padding), hop ``n_fft // 2``, periodic Hann window, not normalized.
    """
    shape = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1]).float()
    window = torch.hann_window(n_fft, device=audio.device, dtype=torch.float32)
    with torch.autocast(audio.device.type, enabled=False):
        spec = torch.stft(flat, n_fft, hop_length=n_fft // 2, window=window, center=True, return_complex=True)
    return spec.reshape(*shape, *spec.shape[-2:])
