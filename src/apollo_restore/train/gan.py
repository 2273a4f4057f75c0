"""One GAN training step (paper II-E) and the optimisation state around it.

Step order, as the reference: generator forward; discriminator step on the detached output (LSGAN, eq. 3);
generator step on eq. 6 through the updated discriminator (frozen for that pass). Both gradients are clipped
to norm ``optim.grad_clip``; AdamW for both; StepLR ``x lr_decay`` every ``lr_decay_epochs`` epochs.
Real and restored clips go through the discriminator as one batch (per-example normalisation makes that
identical to two passes, and it is one DDP forward per phase).
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from apollo_restore.checkpoint import load_state
from apollo_restore.errors import ApolloError
from apollo_restore.gate import Gate
from apollo_restore.inference import keep_freed_memory
from apollo_restore.model import Apollo
from apollo_restore.train.config import ExperimentConfig
from apollo_restore.train.discriminator import Discriminator
from apollo_restore.train.distributed import DistributedContext
from apollo_restore.train.losses import (
    SpectralReconstructionLoss,
    discriminator_loss,
    generator_loss,
    mean_logit,
)

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _wrap(module: nn.Module, ctx: DistributedContext) -> nn.Module:
    if not ctx.distributed:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def _split(tensors: list[torch.Tensor], n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Batch-concatenated outputs -> (first n examples, the rest) per tensor."""
    return [t[:n] for t in tensors], [t[n:] for t in tensors]


class GANTrainer:
    """Generator + discriminator with their optimizers, schedulers and gradient scalers.

    ``step(degraded, clean, adversarial, generator)`` runs one optimisation step on ``[batch, channels,
    samples]`` tensors; ``adversarial=False`` is a reconstruction-only (warm-up) step that leaves the
    discriminator alone, ``generator=False`` a discriminator-only step against the frozen generator.
    Under torchrun both networks are wrapped in DDP, so gradients are averaged over processes.
    """

    def __init__(self, config: ExperimentConfig, ctx: DistributedContext) -> None:
        self.config = config
        self.ctx = ctx
        optim = config.optim
        precision = config.train.precision
        if precision == "fp16" and ctx.device.type != "cuda":
            raise ApolloError("precision fp16 needs a CUDA device (use fp32 or bf16)")
        self.autocast_dtype = _AUTOCAST_DTYPES.get(precision)
        # the activations of a step are freed and allocated again every step: without this, glibc unmaps and
        # the kernel faults them in again (a 64x2 CPU step 1.3x slower, docs/training.md)
        keep_freed_memory()
        self.generator = Apollo(config.model)
        if config.train.init_from is not None:
            self._initialise_generator(config.train.init_from)
        self.generator.to(ctx.device)
        self.generator.gradient_checkpointing = config.train.gradient_checkpointing
        self.discriminator = Discriminator(config.discriminator).to(ctx.device)
        #: rules on where the generator may write (None: it writes every bin), applied before the losses
        self.gate = None if config.gate is None else Gate(config.gate, config.model)
        #: what validation restores through and checkpoints carry (`ExperimentConfig.served_gate`)
        self.inference_gate = None if config.served_gate is None else Gate(config.served_gate, config.model)
        self.g = _wrap(self.generator, ctx)
        if config.train.compile is not None:  # training steps only: validation and checkpoints use the plain module
            builds_cpu_kernels = config.train.compile == "inductor" and ctx.device.type == "cpu"
            if builds_cpu_kernels and not any(map(shutil.which, ("g++", "clang++"))):
                raise ApolloError("train.compile inductor builds C++ kernels on the CPU and needs g++ "
                                  "(apt-get install g++), or set train.compile=null to train eagerly")
            self.g = torch.compile(self.g, backend=config.train.compile, dynamic=False)
        self.d = _wrap(self.discriminator, ctx)
        self.g_opt = torch.optim.AdamW(
            self.generator.parameters(), optim.generator_lr, optim.generator_betas,
            weight_decay=optim.weight_decay,
        )
        self.d_opt = torch.optim.AdamW(
            self.discriminator.parameters(), optim.discriminator_lr, optim.discriminator_betas,
            weight_decay=optim.weight_decay,
        )
        self.g_sched = torch.optim.lr_scheduler.StepLR(self.g_opt, optim.lr_decay_epochs, optim.lr_decay)
        self.d_sched = torch.optim.lr_scheduler.StepLR(self.d_opt, optim.lr_decay_epochs, optim.lr_decay)
        use_scaler = precision == "fp16"
        self.g_scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_scaler)
        self.d_scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_scaler)
        self.reconstruction = SpectralReconstructionLoss(
            config.loss.fft_sizes, config.loss.log_magnitude, config.loss.complex_spectrum, config.loss.complex_kept
        )

    def _initialise_generator(self, source: str) -> None:
        """Start from another checkpoint's weights; its architecture must equal ``config.model``'s."""
        config, state, _ = load_state(source)
        if config != self.config.model:
            raise ApolloError(f"train.init_from {source}: its model config differs from this run's model config")
        self.generator.load_state_dict(state)

    @staticmethod
    def _post(audio: torch.Tensor, gate: Gate | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """``gate`` for a batch ``[batch, channels, samples]``: each example's cut over all its channels."""
        return None if gate is None else gate.bind(channels=audio.shape[1])

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for network forwards (a no-op at fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.autocast_dtype)

    def _update(self, loss: torch.Tensor, params: Any, opt: torch.optim.Optimizer, scaler: Any) -> float:
        """Backward, unscale, clip, step; returns the gradient norm before clipping."""
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(list(params), self.config.optim.grad_clip)
        scaler.step(opt)
        scaler.update()
        return float(norm)

    def step(
        self, degraded: torch.Tensor, clean: torch.Tensor, adversarial: bool = True, generator: bool = True
    ) -> dict[str, float]:
        """One training step; returns the losses and gradient norms as floats."""
        if not (adversarial or generator):
            raise ValueError("a step trains the generator, the discriminator or both")
        self.g.train()
        self.d.train()
        n = degraded.shape[0]
        with self.autocast(), torch.set_grad_enabled(generator):
            # the discriminator-only step runs the plain module: a compiled one would build a second graph
            restored = (self.g if generator else self.generator)(degraded, self._post(degraded, self.gate)).float()
        metrics: dict[str, float] = {}
        if adversarial:
            with self.autocast():
                logits, _ = self.d(torch.cat([restored.detach(), clean]))
            fake_logits, real_logits = _split(logits, n)
            loss_d = discriminator_loss(real_logits, fake_logits)
            metrics["d_grad_norm"] = self._update(
                loss_d, self.discriminator.parameters(), self.d_opt, self.d_scaler
            )
            metrics["d_loss"] = float(loss_d.detach())
            # how far apart the discriminator holds real and restored clips (0 at chance, 1 when it separates them)
            metrics["d_real"], metrics["d_fake"] = mean_logit(real_logits), mean_logit(fake_logits)
            metrics["d_margin"] = metrics["d_real"] - metrics["d_fake"]
            if not generator:
                return metrics
        rec = self.reconstruction(restored, clean, degraded)
        if adversarial:
            # generator pass through the updated, frozen discriminator (no DDP: its weights get no gradient)
            self.discriminator.requires_grad_(False)
            try:
                with self.autocast():
                    logits, features = self.discriminator(torch.cat([restored, clean]))
            finally:
                self.discriminator.requires_grad_(True)
            fake_logits, _ = _split(logits, n)
            fake_features, real_features = zip(*(_split(maps, n) for maps in features), strict=True)
            losses = generator_loss(self.config.loss, rec, fake_logits, list(fake_features), list(real_features))
        else:
            losses = generator_loss(self.config.loss, rec)
        metrics["g_grad_norm"] = self._update(losses.total, self.generator.parameters(), self.g_opt, self.g_scaler)
        metrics.update(losses.as_floats())
        return metrics

    def end_epoch(self) -> None:
        """Advance both learning-rate schedules by one epoch (the discriminator's also during warm-up)."""
        self.g_sched.step()
        with warnings.catch_warnings():  # during warm-up the discriminator optimizer has not stepped yet
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.d_sched.step()

    @property
    def learning_rates(self) -> dict[str, float]:
        return {"lr_g": self.g_opt.param_groups[0]["lr"], "lr_d": self.d_opt.param_groups[0]["lr"]}

    @torch.no_grad()
    def restore(self, degraded: torch.Tensor) -> torch.Tensor:
        """Generator inference (eval mode, no DDP): ``[batch, channels, samples]`` -> same shape."""
        self.generator.eval()
        with self.autocast():
            out = self.generator(degraded, self._post(degraded, self.inference_gate)).float()
        self.generator.train()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_opt": self.g_opt.state_dict(),
            "d_opt": self.d_opt.state_dict(),
            "g_sched": self.g_sched.state_dict(),
            "d_sched": self.d_sched.state_dict(),
            "g_scaler": self.g_scaler.state_dict(),
            "d_scaler": self.d_scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
        except (KeyError, RuntimeError) as error:
            first = str(error).strip().splitlines()[0]
            raise ApolloError(f"training state does not fit this config's networks ({first})") from None
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        self.g_sched.load_state_dict(state["g_sched"])
        self.d_sched.load_state_dict(state["d_sched"])
        self.g_scaler.load_state_dict(state["g_scaler"])
        self.d_scaler.load_state_dict(state["d_scaler"])
