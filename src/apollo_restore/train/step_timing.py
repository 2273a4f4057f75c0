"""Training speed of a config on this machine: timed GAN and reconstruction-only steps on synthetic clips.

``apollo train CONFIG.yaml --bench N`` prints what :func:`time_training_steps` measures; no dataset is read.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass

import torch

from apollo_restore.train.config import ExperimentConfig
from apollo_restore.train.distributed import init_distributed
from apollo_restore.train.gan import GANTrainer


@dataclass(frozen=True)
class StepTiming:
    adversarial: bool
    seconds_per_step: float  # wall clock
    cpu_seconds_per_step: float  # process CPU time (all threads)

    @property
    def steps_per_second(self) -> float:
        return 1.0 / self.seconds_per_step


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def time_training_steps(config: ExperimentConfig, steps: int, adversarial: bool, seed: int = 0) -> StepTiming:
    """One warm-up step, then ``steps`` timed steps on random ``[batch, 2, clip]`` clips (config's sizes)."""
    torch.manual_seed(seed)
    trainer = GANTrainer(config, init_distributed(config.train.device))
    samples = round(config.data.clip_seconds * config.model.sample_rate)
    shape = (config.train.batch_size, config.discriminator.audio_channels, samples)
    clean = 0.1 * torch.randn(shape, device=trainer.ctx.device)
    degraded = clean + 0.01 * torch.randn_like(clean)
    trainer.step(degraded, clean, adversarial)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.step(degraded, clean, adversarial)
    if trainer.ctx.device.type == "cuda":
        torch.cuda.synchronize(trainer.ctx.device)
    return StepTiming(adversarial, (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps)


def describe(config: ExperimentConfig) -> str:
    m, t = config.model, config.train
    return (
        f"{m.feature_dim}x{m.num_layers}{' causal' if m.causal else ''}, batch {t.batch_size} x "
        f"{config.data.clip_seconds:g} s stereo, {torch.get_num_threads()} threads"
    )
