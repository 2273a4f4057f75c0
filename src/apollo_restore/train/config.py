"""Training configuration: typed dataclasses, read from YAML and written back resolved into each run.

One YAML file has the sections ``model`` (:class:`ApolloConfig`), ``data`` (:class:`MixConfig`),
``validation``, ``discriminator``, ``loss``, ``optim`` and ``train``; a missing section or key keeps its
default, which is the paper's recipe (section III-B). See ``configs/paper.yaml`` and ``docs/training.md``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from apollo_restore.data import MixConfig
from apollo_restore.errors import ApolloError
from apollo_restore.gate import GateConfig
from apollo_restore.mapping import apply_override, from_mapping, to_mapping
from apollo_restore.model import ApolloConfig

#: STFT sizes of the discriminator and of the reconstruction loss (paper III-B, Table I)
PAPER_FFT_SIZES = (32, 64, 128, 256, 512, 1024, 2048)


@dataclass
class DiscriminatorConfig:
    """Multi-resolution STFT discriminator (Table I): one 7-layer 2-D conv net per STFT size.

    ``spectrum`` is what each sub-discriminator sees: ``complex`` (the paper: Re/Im of every channel, waveform
    divided by its L2 norm) or ``log_magnitude`` (not in the paper: ``ln |S|`` of every channel relative to the
    example's loudest bin, floored ``LOG_RANGE_DB`` below it). On linear Re/Im the band a codec cuts sits 40-60 dB
    under the rest and is nearly invisible, so the paper's discriminator stayed at LSGAN chance on 2 CPU cores;
    on log magnitudes that band weighs as much as the pass band.
    """

    fft_sizes: tuple[int, ...] = PAPER_FFT_SIZES
    hidden_channels: int = 8  # first layer width; doubles at every layer up to 32x
    audio_channels: int = 2  # input maps: Re/Im of each channel (complex) or one map per channel (log_magnitude)
    spectrum: Literal["complex", "log_magnitude"] = "complex"
    #: weight parametrisation of the STFT sub-discriminators' hidden convs (the paper: spectral norm)
    norm: Literal["spectral", "weight"] = "spectral"
    #: HiFi-GAN's multi-period discriminator beside the STFT ones: one 2-D conv net per period on the waveform
    #: folded into ``[samples / p, p]`` (not in the paper; empty: none, e.g. ``[2, 3, 5, 7, 11]``)
    periods: tuple[int, ...] = ()
    period_channels: int = 8  # first layer width of each period net; widths 1x, 4x, 16x, 32x, 32x (HiFi-GAN: 32)

    def __post_init__(self) -> None:
        if not self.fft_sizes and not self.periods:
            raise ValueError("the discriminator needs fft_sizes or periods")
        if any(n < 4 for n in self.fft_sizes):
            raise ValueError("fft_sizes must be sizes >= 4")
        if any(p < 1 for p in self.periods):
            raise ValueError("periods must be >= 1")


@dataclass
class LossConfig:
    """Generator loss eq. 6: ``reconstruction * L_rec + feature_matching * L_FM + adversarial * L_GAN``."""

    reconstruction: float = 1.0
    feature_matching: float = 1.0
    adversarial: float = 1.0
    fft_sizes: tuple[int, ...] = PAPER_FFT_SIZES  # resolutions of the magnitude loss (eq. 4), hop n_fft / 2
    #: weight of a log-magnitude L1 term added to eq. 4 at each resolution (not in the paper, which has 0):
    #: linear magnitudes let the quiet high band count for almost nothing, log magnitudes weigh it like the rest
    log_magnitude: float = 0.0
    #: weight of a complex-spectrum L1 term ``mean|S_est - S_ref| / mean|S_ref|`` at each resolution (not in the
    #: paper): phase-aware, so content whose phase cannot be predicted is not made louder than it pays in SI-SNR
    complex_spectrum: float = 0.0
    #: weight of the complex-spectrum term over the bins the codec kept only (the degraded input within 60 dB of
    #: its frame's peak; not in the paper): phase-aware where the input's phase is right, magnitudes elsewhere
    complex_kept: float = 0.0


@dataclass
class OptimConfig:
    """AdamW for both networks, StepLR decay per epoch, gradient-norm clipping (paper III-B)."""

    generator_lr: float = 1e-3
    discriminator_lr: float = 1e-4
    weight_decay: float = 0.01
    generator_betas: tuple[float, float] = (0.9, 0.999)
    discriminator_betas: tuple[float, float] = (0.5, 0.99)
    lr_decay: float = 0.98
    lr_decay_epochs: int = 2
    grad_clip: float = 5.0


@dataclass
class ValidationConfig:
    """What chooses the best checkpoint and stops training early (see `train.validation`).

    ``directory`` is a pre-rendered set (``manifest.jsonl`` layout of `apollo make-testset`, e.g. the
    real-music set), of which ``items`` evenly spaced clips are used, each cut to its central ``clip_seconds``
    (None: whole clips); ``per_cell`` first keeps that many clips per (bitrate, category) cell, the lowest
    ranks (for the real-music set: files from different sources; see `data.testset.PairDataset`); without a
    directory, a fixed draw of ``items`` clips from the ``split`` of the training data.
    ``select`` is the metric the best checkpoint is chosen by; with ``si_snr_limit_db`` a checkpoint whose mean
    SI-SNR is more than that below the degraded input's is never chosen. ``at_start``: validate the generator
    before the first step too (a warm-started run's ``best/`` is then never worse than its starting point).
    """

    directory: Path | None = None
    split: str = "valid"
    items: int = 32  # clips used per validation (evenly spaced over the set)
    every_epochs: int = 1
    per_cell: int | None = None
    clip_seconds: float | None = None
    select: Literal["si_snr", "visqol", "lsd_hf", "visqol_lsd_hf"] = "si_snr"
    si_snr_limit_db: float | None = None
    at_start: bool = False

    def __post_init__(self) -> None:
        if self.items < 1 or self.every_epochs < 1:
            raise ValueError("items and every_epochs must be >= 1")
        if self.clip_seconds is not None and not self.clip_seconds > 0.5:
            raise ValueError("clip_seconds must be above 0.5 s (or null for whole clips)")


@dataclass
class TrainConfig:
    """Loop, run directory, devices and bookkeeping."""

    run_dir: Path = Path("runs/apollo")
    seed: int = 0
    batch_size: int = 1  # per process (per GPU under torchrun)
    epoch_size: int = 1000  # examples drawn per epoch (all processes together)
    max_epochs: int = 1000
    max_steps: int | None = None  # stop after this many optimizer steps (None: no limit)
    warmup_steps: int = 0  # reconstruction-only steps before the adversarial losses switch on
    #: then steps where only the discriminator learns, against the generator as it stands (frozen), so that the
    #: GAN phase starts with a discriminator that already tells its output from clean music (docs/training.md)
    discriminator_warmup_steps: int = 0
    patience: int = 20  # early stopping: validations without a better validation score
    save_every_steps: int = 200  # training state + last checkpoint; also at every epoch end
    log_every_steps: int = 10
    num_workers: int = 2
    device: str = "auto"  # auto (CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps (torchrun: the local GPU)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype on CUDA
    gradient_checkpointing: bool = False  # recompute generator blocks in backward: far less memory, ~30 % slower
    #: ``torch.compile`` backend for the generator's training forward and backward: "inductor" (fused kernels;
    #: 64x2 steps 1.3x faster on one CPU thread after a 1-4 min compile at the start, docs/training.md) or any
    #: other torch backend name; None: eager
    compile: str | None = None
    #: checkpoint (bundled name, folder or file) whose generator weights start a new run (fine-tuning);
    #: its model config must match ``model`` up to gate settings. Not used when the run resumes.
    init_from: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "epoch_size", "max_epochs", "save_every_steps", "log_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("warmup_steps", "discriminator_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


@dataclass
class ExperimentConfig:
    """Everything one training run uses; saved resolved as ``config.yaml`` in the run directory."""

    model: ApolloConfig = field(default_factory=ApolloConfig)
    gate: GateConfig | None = None  # rules on where the generator may write (`apollo_restore.gate`); None: none
    #: the gate of validation and of the saved checkpoints, where it differs from ``gate``: rules applied at
    #: inference only, the generator trains without them (may change when a run resumes); None: ``gate``
    inference_gate: GateConfig | None = None
    data: MixConfig = field(default_factory=MixConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def served_gate(self) -> GateConfig | None:
        """The gate validation restores through and the saved checkpoints carry."""
        return self.inference_gate or self.gate


#: the one environment variable configs may use for where data lives: ``${APOLLO_DATA}/realset``
DATA_VARIABLE = "APOLLO_DATA"


def _merge(base: dict, overlay: dict) -> dict:
    """``overlay`` on top of ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _expand(value: Any, path: Path) -> Any:
    """``${NAME}`` in every string of a YAML tree, from the environment; an unset variable is an error."""
    if isinstance(value, dict):
        return {k: _expand(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path) for v in value]
    if isinstance(value, str):
        for name in re.findall(r"\$\{(\w+)\}", value):
            if name not in os.environ:
                hint = " (the folder your data lives in)" if name == DATA_VARIABLE else ""
                raise ApolloError(f"{path}: uses ${{{name}}} but it is not set{hint}: export {name}=...")
            value = value.replace(f"${{{name}}}", os.environ[name])
    return value


def _read_yaml(path: Path, including: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping with its ``include:`` files (relative to it) merged underneath, in order."""
    import yaml

    if path.resolve() in including:
        raise ApolloError(f"{path}: includes itself (through {' -> '.join(p.name for p in including)})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ApolloError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ApolloError(f"{path}: cannot read config ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ApolloError(f"{path}: not valid YAML{line}") from None
    if not isinstance(data, dict):
        raise ApolloError(f"{path}: a config must be a mapping of sections")
    includes = data.pop("include", [])
    base: dict = {}
    for name in [includes] if isinstance(includes, str) else includes:
        if not isinstance(name, str):
            raise ApolloError(f"{path}: include must be a file name or a list of them")
        base = _merge(base, _read_yaml(path.parent / name, (*including, path.resolve())))
    return _merge(base, data)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML config (with its ``include:`` bases and ``${APOLLO_DATA}``) and apply ``section.key=value``
    overrides; one-line ApolloError on any problem."""
    path = Path(path)
    data = _read_yaml(path)
    for assignment in overrides:
        apply_override(data, assignment)
    data = _expand(data, path)
    try:
        return from_mapping(ExperimentConfig, data)
    except ApolloError as error:
        raise ApolloError(f"{path}: {error}") from None


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as YAML text (every key, defaults included)."""
    import yaml

    return yaml.safe_dump(to_mapping(config), sort_keys=False)
