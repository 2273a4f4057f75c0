"""The training loop: epochs of GAN steps, validation, early stopping, checkpoints, resume.

A run directory holds ``config.yaml`` (resolved), ``state.pt`` (everything needed to resume) with its SHA-256 in
``state.pt.sha256``, ``last/`` and ``best/`` (native generator checkpoints), ``metrics.jsonl``, ``tensorboard/``
and ``losses.png``. Every file is written atomically by rank 0. A state whose bytes do not match its checksum
(a flipped bit on disk, a bad copy) is refused rather than resumed. Running the same command on a directory
that holds ``state.pt`` resumes it: the interrupted epoch continues at the batch after the last save, with the
same examples, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import random
import signal
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from apollo_restore.checkpoint import save_model
from apollo_restore.errors import ApolloError
from apollo_restore.files import atomic_write
from apollo_restore.train import validation
from apollo_restore.train.config import ExperimentConfig, dump_config
from apollo_restore.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    any_process,
    barrier,
    gather_objects,
    init_distributed,
    shutdown_distributed,
)
from apollo_restore.train.gan import GANTrainer
from apollo_restore.train.records import FIGURE_FILE, METRICS_FILE, MetricsLog, plot_losses

STATE_FILE = "state.pt"
#: ``<sha256>  state.pt`` lines: the state just written and, while it is being replaced, the one before it
CHECKSUM_FILE = STATE_FILE + ".sha256"
PLOT_EVERY_SECONDS = 120.0  # losses.png is redrawn at an epoch end at most this often, and at the end
CONFIG_FILE = "config.yaml"
#: config sections that must match when resuming (they define the networks' shapes)
_FIXED_SECTIONS = ("model", "gate", "discriminator")


@dataclass
class Progress:
    """Counters that make a run resumable, saved in ``state.pt``."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # steps done in the current (unfinished) epoch
    best_score: float | None = None  # best validation selection score so far (``validation.select``)
    best_step: int | None = None
    bad_epochs: int = 0  # validations since the best one (early stopping at ``patience``)
    train_hours: float = 0.0  # wall-clock hours spent in training steps, over all sessions (rank 0)
    cpu_hours: float = 0.0  # CPU hours of the training process (all its threads) in those steps (rank 0)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Progress:
        """From ``state.pt``'s ``progress``; states written before selection by any metric had ``best_si_snr``."""
        state = dict(state)
        if "best_si_snr" in state:
            state["best_score"] = state.pop("best_si_snr")
        return cls(**state)


class _StopRequest:
    """SIGINT / SIGTERM set a flag; the loop saves and stops after the current step. A second SIGINT aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _ignore_sigint(worker_id: int) -> None:
    """Data-loader workers leave Ctrl-C to the main process, which saves before stopping."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain numbers (so ``torch.load(weights_only=True)`` reads them)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    keys, pos, has_gauss, gauss = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def write_state(run_dir: Path, data: bytes, previous_digest: str | None) -> str:
    """Write ``state.pt`` and its checksum; returns the new digest. The checksum file goes first and names both
    the new and the previous state, so a run killed between the two writes still resumes (from the old one)."""
    digest = hashlib.sha256(data).hexdigest()
    lines = f"{digest}  {STATE_FILE}\n" + (f"{previous_digest}  {STATE_FILE} (previous)\n" if previous_digest else "")
    atomic_write(run_dir / CHECKSUM_FILE, lambda tmp: Path(tmp).write_text(lines))
    atomic_write(run_dir / STATE_FILE, lambda tmp: Path(tmp).write_bytes(data))
    return digest


def read_verified_state(state_path: Path) -> bytes:
    """The bytes of ``state.pt``, refused (one line) if they do not match ``state.pt.sha256``."""
    try:
        data = state_path.read_bytes()
    except OSError as error:
        raise ApolloError(f"{state_path}: cannot read training state ({error.strerror})") from None
    checksum_path = state_path.with_name(CHECKSUM_FILE)
    if not checksum_path.exists():
        print(f"{state_path}: no {CHECKSUM_FILE} beside it (written before checksums were kept); resuming unverified")
        return data
    try:
        known = {line.split()[0] for line in checksum_path.read_text().splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError) as error:
        raise ApolloError(f"{checksum_path}: cannot read ({error})") from None
    if hashlib.sha256(data).hexdigest() not in known:
        raise ApolloError(f"{state_path}: does not match its checksum in {CHECKSUM_FILE} (the file is corrupt); "
                          "restore it from a copy, or choose another train.run_dir to start afresh")
    return data


class Trainer:
    """Owns one run: data, :class:`GANTrainer`, progress, and the run directory (rank 0 writes)."""

    def __init__(self, config: ExperimentConfig, ctx: DistributedContext) -> None:
        from apollo_restore.data.cache import training_dataset

        self.config = config
        self.ctx = ctx
        self.run_dir = Path(config.train.run_dir)
        tc = config.train
        self.train_set = training_dataset(config.data, tc.epoch_size, tc.seed)  # a pair cache, or mixing
        self.valid_set = self._validation_set()
        per_process = tc.epoch_size // ctx.world_size
        self.steps_per_epoch = per_process // tc.batch_size
        if self.steps_per_epoch < 1:
            raise ApolloError(
                f"train.epoch_size {tc.epoch_size} is smaller than batch_size {tc.batch_size} x "
                f"{ctx.world_size} process(es): no full batch per epoch"
            )
        _seed_everything(tc.seed)
        self.gan = GANTrainer(config, ctx)
        self.progress = Progress()
        self._input_scores: dict[int, dict[str, float]] = {}  # validation metrics of the degraded clips
        self.log: MetricsLog | None = None
        self._plotted = time.monotonic()
        self._state_digest: str | None = None  # SHA-256 of the state.pt on disk

    def _validation_set(self) -> Dataset:
        vc, tc = self.config.validation, self.config.train
        if vc.directory is not None:
            from apollo_restore.data.testset import PairDataset

            return PairDataset(vc.directory, per_cell=vc.per_cell)
        from apollo_restore.data import MixtureDataset

        dataset = MixtureDataset(self.config.data, split=vc.split, epoch_size=vc.items, seed=tc.seed + 1)
        dataset.set_epoch(0)
        return dataset

    # -- persistence ----------------------------------------------------------------------------------------

    def _check_resumable(self) -> None:
        import yaml

        saved = yaml.safe_load((self.run_dir / CONFIG_FILE).read_text()) or {}
        current = yaml.safe_load(dump_config(self.config))
        for section in _FIXED_SECTIONS:
            if saved.get(section) != current[section]:
                raise ApolloError(
                    f"{self.run_dir} holds a run with a different '{section}' config; "
                    "choose another train.run_dir or delete that run"
                )

    def resume_or_start(self) -> None:
        """Load ``state.pt`` if the run directory has one; write the resolved config (rank 0)."""
        state_path = self.run_dir / STATE_FILE
        if state_path.exists():
            if (self.run_dir / CONFIG_FILE).exists():
                self._check_resumable()
            data = read_verified_state(state_path)
            self._state_digest = hashlib.sha256(data).hexdigest()
            try:
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as error:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ApolloError(f"{state_path}: cannot read training state ({reason})") from None
            self.gan.load_state_dict(state["trainer"])
            self.progress = Progress.from_state(state["progress"])
            rng = state["rng"]
            _set_rng_state(rng[self.ctx.rank] if len(rng) == self.ctx.world_size else rng[0])
            if self.ctx.is_main:
                print(f"resuming {self.run_dir} at step {self.progress.step} (epoch {self.progress.epoch})")
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            text = dump_config(self.config)
            atomic_write(self.run_dir / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))
            self.log = MetricsLog(self.run_dir, self.progress.step)
        barrier()

    def save(self) -> None:
        """Training state + ``last/`` generator (every rank calls this; rank 0 writes)."""
        rng = gather_objects(_rng_state())
        if not self.ctx.is_main:
            return
        state = {
            "trainer": self.gan.state_dict(),
            "progress": dataclasses.asdict(self.progress),
            "rng": rng,
            "world_size": self.ctx.world_size,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._state_digest = write_state(self.run_dir, buffer.getvalue(), self._state_digest)
        save_model(self.gan.generator, self.run_dir / "last", card=self._card("last"), gate=self.config.served_gate)

    def _card(self, which: str) -> str:
        p = self.progress
        best = "n/a" if p.best_score is None else f"{p.best_score:.3f} at step {p.best_step}"
        return (
            f"# Apollo generator ({which})\n\nTrained with `apollo train`: step {p.step}, epoch {p.epoch}.\n"
            f"Best validation score ({self.config.validation.select}): {best}.\n"
        )

    # -- loop -----------------------------------------------------------------------------------------------

    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        tc = self.config.train
        self.train_set.set_epoch(epoch)
        sampler = DistributedSampler(
            self.train_set, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
            shuffle=True, seed=tc.seed, drop_last=True,
        )
        sampler.set_epoch(epoch)
        indices = list(sampler)[skip_batches * tc.batch_size : self.steps_per_epoch * tc.batch_size]
        return DataLoader(
            self.train_set, batch_size=tc.batch_size, sampler=indices, drop_last=True,
            num_workers=tc.num_workers, worker_init_fn=_ignore_sigint,
            pin_memory=self.ctx.device.type == "cuda",
        )

    def _finished(self) -> str | None:
        tc, p = self.config.train, self.progress
        if tc.max_steps is not None and p.step >= tc.max_steps:
            return f"reached max_steps {tc.max_steps}"
        if p.epoch >= tc.max_epochs:
            return f"reached max_epochs {tc.max_epochs}"
        if p.bad_epochs >= tc.patience:
            return f"early stopping: no better validation {self.config.validation.select} for {tc.patience} validations"
        return None

    def _log_train(self, sums: dict[str, float], count: int, seconds: float, cpu_seconds: float
                   ) -> dict[str, float]:
        """Average the interval's metrics over steps and processes; rank 0 writes them (with the run's hours)."""
        keys = sorted(sums)
        values = torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64, device=self.ctx.device)
        totals = all_reduce_sum(values).cpu()
        record = {k: float(v) / float(totals[-1]) for k, v in zip(keys, totals[:-1], strict=True)}
        record.update(self.gan.learning_rates)
        record["steps_per_sec"] = count / max(seconds, 1e-9)
        self.progress.train_hours += seconds / 3600
        self.progress.cpu_hours += cpu_seconds / 3600
        record.update(train_hours=self.progress.train_hours, cpu_hours=self.progress.cpu_hours)
        if self.log is not None:
            self.log.write({"step": self.progress.step, "epoch": self.progress.epoch, **record})
        return record

    @torch.no_grad()
    def validate(self) -> tuple[dict[str, float], dict[str, float]]:
        """Mean metrics of the restored and of the degraded validation clips, over all processes."""
        vc = self.config.validation
        which = validation.metric_names(vc)
        samples = None if vc.clip_seconds is None else round(vc.clip_seconds * self.config.model.sample_rate)
        restored_rows, degraded_rows = [], []
        mine = validation.chosen_indices(len(self.valid_set), vc.items)[self.ctx.rank :: self.ctx.world_size]
        for i in mine:
            example = self.valid_set[i]
            clean, degraded = validation.central(example["clean"], samples), validation.central(example["degraded"],
                                                                                               samples)
            restored = self.gan.restore(degraded[None].to(self.ctx.device))[0].cpu().numpy()
            sr = self.config.model.sample_rate
            restored_rows.append(validation.score_example(clean.numpy(), degraded.numpy(), restored, sr, which))
            if i not in self._input_scores:  # the degraded clips do not change: score them once
                self._input_scores[i] = validation.score_example(clean.numpy(), degraded.numpy(), None, sr, which)
            degraded_rows.append(self._input_scores[i])
        sums = validation.nan_mean_sums(restored_rows, which) + validation.nan_mean_sums(degraded_rows, which)
        totals = all_reduce_sum(torch.tensor(sums, dtype=torch.float64, device=self.ctx.device)).cpu().tolist()
        if totals[1] == 0:
            raise ApolloError("the validation set is empty")
        half = len(totals) // 2
        return validation.means_from_sums(totals[:half], which), validation.means_from_sums(totals[half:], which)

    def _end_epoch(self) -> None:
        p, vc = self.progress, self.config.validation
        self.gan.end_epoch()
        p.epoch += 1
        p.batch_in_epoch = 0
        if p.epoch % vc.every_epochs == 0:
            self._validate_and_select()

    def _validate_and_select(self) -> None:
        """Validate the generator as it is now; keep it in ``best/`` if its score beats the best so far."""
        p, vc = self.progress, self.config.validation
        restored, degraded = self.validate()
        score = validation.selection_score(vc.select, restored, degraded)
        allowed = validation.eligible(vc, restored, degraded)
        improved = allowed and (p.best_score is None or score > p.best_score)
        if improved:
            p.best_score, p.best_step, p.bad_epochs = score, p.step, 0
        else:
            p.bad_epochs += 1
        if self.log is not None:
            record = {f"val_{k}": v for k, v in restored.items()} | {f"val_{k}_input": v for k, v in degraded.items()}
            self.log.write({"step": p.step, "epoch": p.epoch, **record, "val_score": score, "val_eligible": allowed,
                            "train_hours": p.train_hours, "cpu_hours": p.cpu_hours})
            shown = ", ".join(f"{k} {restored[k]:.3f} (input {degraded[k]:.3f})" for k in restored)
            best = "none yet" if p.best_score is None else f"{p.best_score:.3f} at step {p.best_step}"
            print(f"epoch {p.epoch} step {p.step}: validation {shown}; {vc.select} score {score:.3f}"
                  f"{'' if allowed else ' (SI-SNR below the limit: not eligible)'}, best {best}")
            if improved:
                save_model(self.gan.generator, self.run_dir / "best", card=self._card("best"),
                           gate=self.config.served_gate)

    def fit(self) -> str:
        """Train until a stop condition; returns why it stopped."""
        p = self.progress
        if self.config.validation.at_start and p.step == 0 and p.best_score is None:
            self._validate_and_select()  # the starting point's score: a later checkpoint must beat it to be best
        with _StopRequest() as stop:
            while (reason := self._finished()) is None:
                self._run_epoch(stop)
                if stop.requested:
                    reason = "interrupted (state saved; run the same command to resume)"
                    break
        if self.ctx.is_main:
            self._plot()
            print(f"{self.run_dir}: {reason} at step {p.step}")
        return reason

    def _run_epoch(self, stop: _StopRequest) -> None:
        tc, p = self.config.train, self.progress
        loader = self._loader(p.epoch, p.batch_in_epoch)
        bar = tqdm(
            total=self.steps_per_epoch, initial=p.batch_in_epoch, desc=f"epoch {p.epoch + 1}",
            disable=not (self.ctx.is_main and tc.progress), dynamic_ncols=True, unit="step",
        )
        sums: dict[str, float] = defaultdict(float)
        count, started, cpu_started = 0, time.perf_counter(), time.process_time()
        interrupted = False
        for batch in loader:
            degraded = batch["degraded"].to(self.ctx.device, non_blocking=True)
            clean = batch["clean"].to(self.ctx.device, non_blocking=True)
            d_warm = tc.warmup_steps <= p.step < tc.warmup_steps + tc.discriminator_warmup_steps
            metrics = self.gan.step(degraded, clean, adversarial=p.step >= tc.warmup_steps, generator=not d_warm)
            p.step += 1
            p.batch_in_epoch += 1
            for key, value in metrics.items():
                sums[key] += value
            count += 1
            bar.update(1)
            if p.step % tc.log_every_steps == 0:
                record = self._log_train(sums, count, time.perf_counter() - started,
                                         time.process_time() - cpu_started)
                bar.set_postfix({k: f"{record[k]:.3g}" for k in ("g_rec", "g_adv", "d_loss") if k in record})
                sums, count, started, cpu_started = defaultdict(float), 0, time.perf_counter(), time.process_time()
            interrupted = any_process(stop.requested, self.ctx.device)
            stop.requested = interrupted
            at_limit = tc.max_steps is not None and p.step >= tc.max_steps
            if interrupted or at_limit:
                break
            if p.step % tc.save_every_steps == 0 and p.batch_in_epoch < self.steps_per_epoch:
                self.save()
        bar.close()
        if p.batch_in_epoch >= self.steps_per_epoch:
            self._end_epoch()
        self.save()
        if self.ctx.is_main and time.monotonic() - self._plotted > PLOT_EVERY_SECONDS:
            self._plot()

    def _plot(self) -> None:
        plot_losses(self.run_dir / METRICS_FILE, self.run_dir / FIGURE_FILE)
        self._plotted = time.monotonic()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def train(config: ExperimentConfig) -> str:
    """Run (or resume) training as configured, in this process or as one rank under torchrun."""
    ctx = init_distributed(config.train.device)
    try:
        trainer = Trainer(config, ctx)
        try:
            trainer.resume_or_start()
            return trainer.fit()
        finally:
            trainer.close()
    finally:
        shutdown_distributed()
