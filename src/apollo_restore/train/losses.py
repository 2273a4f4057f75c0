"""GAN losses of the paper (eqs. 3-6).

Discriminator outputs are lists over resolutions (see :mod:`.discriminator`); every loss averages over
resolutions (and layers), as the reference implementation does, so its scale does not grow with their count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from apollo_restore.stft import Framing
from apollo_restore.train.config import LossConfig

_EPS = torch.finfo(torch.float32).eps
#: a bin of the degraded input this far (dB) under its frame's loudest bin or less counts as kept by the codec
KEPT_DB = 60.0


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN (eq. 3): mean over resolutions of ``E[(D(real) - 1)^2] + E[D(fake)^2]``."""
    pairs = zip(real_logits, fake_logits, strict=True)
    terms = [(r.float() - 1).pow(2).mean() + f.float().pow(2).mean() for r, f in pairs]
    return torch.stack(terms).mean()


def mean_logit(logits: list[torch.Tensor]) -> float:
    """Mean discriminator output over resolutions (LSGAN targets: 1 real, 0 fake; 0.5 both at chance)."""
    return float(torch.stack([t.detach().float().mean() for t in logits]).mean())


def adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Generator side of LSGAN: mean over resolutions of ``E[(D(fake) - 1)^2]``."""
    return torch.stack([(f.float() - 1).pow(2).mean() for f in fake_logits]).mean()


def feature_matching_loss(
    fake_features: list[list[torch.Tensor]], real_features: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Eq. 5: mean over resolutions and layers of ``mean|H_fake - sg(H_real)| / mean|sg(H_real)|``."""
    terms = []
    for fakes, reals in zip(fake_features, real_features, strict=True):
        for fake, real in zip(fakes, reals, strict=True):
            real = real.detach().float()
            terms.append((fake.float() - real).abs().mean() / (real.abs().mean() + _EPS))
    return torch.stack(terms).mean()


class SpectralReconstructionLoss(nn.Module):
    """Eq. 4: mean over STFT sizes of ``mean||S_est| - |S_ref|| / mean|S_ref|`` (linear magnitudes).

    Optional terms per resolution (0 in the paper): ``log_weight * mean|ln(|S_est| + f) - ln(|S_ref| + f)|``,
    the floor ``f`` sitting 80 dB below each example's loudest reference bin (level-invariant, so the quiet high
    band counts; silence adds nothing); ``complex_weight * mean|S_est - S_ref| / mean|S_ref|`` (phase-aware);
    and ``kept_weight`` times the same complex term over the bins the codec kept only (the degraded input within
    ``KEPT_DB`` of its frame's loudest bin): there the input's phase is right, so the model is held to it, while
    the band the codec cut, whose phase nothing predicts, is judged by magnitudes (and the discriminator) alone.
    ``forward(estimate, reference, degraded=None)``, each ``[batch, channels, samples]`` -> scalar (``degraded``
    is needed with ``kept_weight``).
    """

    def __init__(self, fft_sizes: tuple[int, ...], log_weight: float = 0.0, complex_weight: float = 0.0,
                 kept_weight: float = 0.0) -> None:
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)
        self.log_weight = log_weight
        self.complex_weight = complex_weight
        self.kept_weight = kept_weight

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor,
                degraded: torch.Tensor | None = None) -> torch.Tensor:
        if self.kept_weight and degraded is None:
            raise ValueError("the kept-bins term needs the degraded input")
        terms = []
        for n_fft in self.fft_sizes:
            framing = Framing(n_fft, n_fft // 2)
            est_spec, ref_spec = framing.stft(estimate), framing.stft(reference)
            est, ref = est_spec.abs(), ref_spec.abs()
            scale = ref.mean() + _EPS
            term = (est - ref).abs().mean() / scale
            if self.log_weight:
                floor = 1e-4 * ref.flatten(1).amax(dim=1).reshape(-1, *[1] * (ref.dim() - 1)) + _EPS
                term = term + self.log_weight * (torch.log(est + floor) - torch.log(ref + floor)).abs().mean()
            if self.complex_weight:
                term = term + self.complex_weight * (est_spec - ref_spec).abs().mean() / scale
            if self.kept_weight:
                power = framing.stft(degraded).abs().square()  # [batch, channels, frames, bins]
                kept = power >= power.amax(dim=-1, keepdim=True) * 10 ** (-KEPT_DB / 10)
                term = term + self.kept_weight * ((est_spec - ref_spec).abs() * kept).mean() / scale
            terms.append(term)
        return torch.stack(terms).mean()


@dataclass
class GeneratorLosses:
    """The parts of eq. 6 and their weighted sum ``total`` (scalars)."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    feature_matching: torch.Tensor | None = None
    adversarial: torch.Tensor | None = None

    def as_floats(self) -> dict[str, float]:
        parts = {"g_total": self.total, "g_rec": self.reconstruction}
        if self.adversarial is not None:
            parts["g_adv"] = self.adversarial
            parts["g_fm"] = self.feature_matching
        return {k: float(v.detach()) for k, v in parts.items() if v is not None}


def generator_loss(
    config: LossConfig,
    reconstruction: torch.Tensor,
    fake_logits: list[torch.Tensor] | None = None,
    fake_features: list[list[torch.Tensor]] | None = None,
    real_features: list[list[torch.Tensor]] | None = None,
) -> GeneratorLosses:
    """Eq. 6 ``alpha L_rec + beta L_FM + gamma L_GAN``; reconstruction only when no discriminator output."""
    if fake_logits is None:
        return GeneratorLosses(total=config.reconstruction * reconstruction, reconstruction=reconstruction)
    assert fake_features is not None and real_features is not None
    fm = feature_matching_loss(fake_features, real_features)
    adv = adversarial_loss(fake_logits)
    total = config.reconstruction * reconstruction + config.feature_matching * fm + config.adversarial * adv
    return GeneratorLosses(total=total, reconstruction=reconstruction, feature_matching=fm, adversarial=adv)

