"""Shipping a trained generator as a bundled model: `apollo ship RUN NAME`.

The source is a run directory of `apollo train` (its ``best/`` or ``last/`` checkpoint), a checkpoint folder
inside one (``RUN/best``), or any checkpoint (then the card has no training record). The model lands in
``assets/models/NAME/`` (``model.safetensors`` with the checkpoint's gate section, ``config.json``, ``README.md``
card) and its sha256 in ``registry.json``. The folder is built beside its destination and renamed into place,
so an existing model is replaced only by a complete new one.

The card states what the run's files say: architecture, parameters, gate; the optimizer steps, adversarial
steps and hours up to the chosen step (``metrics.jsonl``); the validation metrics recorded at that step; the
maintainer's notes; and the run's resolved ``config.yaml``. In the notes and the config, paths are written
relative to ``$APOLLO_DATA`` or to the folder the run lives in, so no machine's absolute paths ship in the
package.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from apollo_restore.checkpoint import load_checkpoint, models_root, register_bundled_model, save_model
from apollo_restore.errors import ApolloError
from apollo_restore.gate import Gate
from apollo_restore.model import Apollo
from apollo_restore.train.config import DATA_VARIABLE
from apollo_restore.train.loop import CONFIG_FILE, STATE_FILE
from apollo_restore.train.records import METRICS_FILE, read_metrics

#: validation metrics a card reports, in this order (``val_<name>`` and ``val_<name>_input`` in the log)
CARD_METRICS = ("si_snr", "visqol", "lsd_hf", "env_corr")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class RunRecord:
    """What a run's log says about one of its checkpoints."""

    run: Path
    which: str  # best | last
    step: int  # optimizer steps behind the checkpoint
    total_steps: int  # optimizer steps the run has logged
    adversarial_steps: int  # of ``step``, those with the adversarial losses on
    discriminator_steps: int  # of ``step``, discriminator-only ones (``train.discriminator_warmup_steps``)
    hours: float  # training time of ``step`` steps (from the logged steps per second)
    validation: dict[str, Any] | None  # the validation record at ``step`` (None: none logged there)


def _chosen_step(run: Path, which: str, records: list[dict[str, Any]]) -> int:
    """The step of ``run/which``: from ``state.pt`` when the run has one (it is written with ``last/`` and knows
    the best step), else from the log (``best``: the first highest eligible ``val_score``; ``last``: the last)."""
    state_path = run / STATE_FILE
    if state_path.is_file():
        progress = torch.load(state_path, map_location="cpu", weights_only=True)["progress"]
        step = progress["best_step"] if which == "best" else progress["step"]
        if step is not None:
            return int(step)
    if which == "best":
        scored = [r for r in records if "val_si_snr" in r and r.get("val_eligible", True)]
        if scored:
            return max(scored, key=lambda r: r.get("val_score", r["val_si_snr"]))["step"]
    return max((r["step"] for r in records), default=0)


def run_record(run: str | os.PathLike, which: str) -> RunRecord:
    """Steps, adversarial steps, hours and validation metrics of ``run/which`` from ``run/metrics.jsonl``."""
    run = Path(run)
    records = read_metrics(run / METRICS_FILE)
    step = _chosen_step(run, which, records)
    hours, adversarial, discriminator, done = 0.0, 0, 0, 0
    training = (r for r in records if ("g_rec" in r or "d_loss" in r) and r["step"] <= step)
    for record in sorted(training, key=lambda r: r["step"]):
        count = record["step"] - done
        done = record["step"]
        hours += count / record["steps_per_sec"] / 3600 if record.get("steps_per_sec") else 0.0
        adversarial += count if "g_adv" in record else 0
        discriminator += count if "g_rec" not in record else 0
    validation = [r for r in records if "val_si_snr" in r and r["step"] == step]
    return RunRecord(run, which, step, max((r["step"] for r in records), default=0), adversarial, discriminator,
                     hours, validation[-1] if validation else None)


def portable_paths(text: str, run: Path) -> str:
    """``text`` with the absolute paths of this machine replaced: ``$APOLLO_DATA/...`` for paths under it, and
    paths under the folder holding ``run`` relative to it (``runs/NAME`` stays ``NAME``)."""
    roots = []
    if os.environ.get(DATA_VARIABLE):
        roots.append((Path(os.environ[DATA_VARIABLE]).resolve(), f"${{{DATA_VARIABLE}}}/"))
    roots.append((run.resolve().parent, ""))
    for root, prefix in roots:
        text = text.replace(f"{root}/", prefix)
        text = re.sub(re.escape(str(root)) + r"(?![\w.-])", prefix.rstrip("/") or ".", text)
    return text


def _architecture(model: Apollo) -> str:
    c = model.config
    return (f"Apollo {c.feature_dim}x{c.num_layers}, {c.num_heads} heads, {c.num_bands} bands, "
            f"{'causal' if c.causal else 'non-causal'}, residual head: {c.residual}; "
            f"{model.num_parameters():,} parameters; {c.sample_rate} Hz.")


def _gate_line(gate: Gate | None) -> str:
    if gate is None:
        return "none (the generator's output is written as it is)"
    rules = ", ".join(f"{k} {v}" for k, v in gate.config.to_dict().items())
    return f"{rules} (`apollo_restore.gate`)"


def _discriminator_only(record: RunRecord) -> str:
    n = record.discriminator_steps
    return f", {n} discriminator-only (the generator frozen)" if n else ""


def _validation_table(record: dict[str, Any]) -> str:
    rows = ["| metric | restored | degraded input |", "|---|---|---|"]
    for name in CARD_METRICS:
        if f"val_{name}" in record:
            restored, degraded = record[f"val_{name}"], record.get(f"val_{name}_input", float("nan"))
            rows.append(f"| {name} | {restored:.3f} | {degraded:.3f} |")
    if "val_score" in record:
        rows.append(f"| selection score | {record['val_score']:.3f} | |")
    return "\n".join(rows)


def model_card(name: str, model: Apollo, gate: Gate | None, record: RunRecord | None, notes: str = "") -> str:
    """The model card of bundled model ``name`` (markdown)."""
    lines = [f"# apollo-restore bundled model `{name}`", "", f"- Architecture: {_architecture(model)}",
             f"- Input gate: {_gate_line(gate)}."]
    config = ""
    if record is not None:
        lines.append(f"- Training: checkpoint `{record.which}` of run `{record.run.name}`, step {record.step} of the "
                     f"{record.total_steps} it logged; {record.adversarial_steps} of those steps adversarial"
                     f"{_discriminator_only(record)}; "
                     f"{record.hours:.2f} h of training on the machine it ran on.")
        if record.validation is None:
            lines.append(f"- Validation: none logged at step {record.step}.")
        else:
            lines += [f"- Validation at step {record.step} (the set of `validation` in the training config):", "",
                      _validation_table(record.validation)]
        config_path = record.run / CONFIG_FILE
        if config_path.is_file():
            config = portable_paths(config_path.read_text(), record.run)
    lines += ["", "License: MIT (weights trained by this project; no reference weights used)."]
    if notes.strip():
        lines += ["", "## Notes", "", notes.strip() if record is None else portable_paths(notes.strip(), record.run)]
    if config:
        lines += ["", "## Training config", "", "```yaml", config.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


def _locate(source: Path, which: str) -> tuple[Path, Path | None, str]:
    """(checkpoint, run or None, which checkpoint of the run) for a run directory or a checkpoint."""
    if (source / METRICS_FILE).is_file():
        return source / which, source, which
    if source.is_dir() and (source.parent / METRICS_FILE).is_file() and source.name in ("best", "last"):
        return source, source.parent, source.name
    return source, None, which


def ship(source: str | os.PathLike, name: str, which: str = "best", notes: str = "",
         models: str | os.PathLike | None = None) -> Path:
    """Write the generator of ``source`` (run directory or checkpoint) as bundled model ``name`` under
    ``models`` (default: the package's ``assets/models``) with its card and registry entry; returns its folder."""
    if not _NAME.match(name):
        raise ApolloError(f"{name!r}: a model name is letters, digits, '.', '_' and '-'")
    if which not in ("best", "last"):
        raise ApolloError(f"--from must be best or last, got {which!r}")
    checkpoint, run, which = _locate(Path(source), which)
    if run is not None and not checkpoint.is_dir():
        raise ApolloError(f"{run}: the run has no {which}/ checkpoint yet")
    model, gate = load_checkpoint(checkpoint)
    card = model_card(name, model, gate, None if run is None else run_record(run, which), notes)
    root = Path(models) if models is not None else models_root()
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".building", dir=root))
    try:
        save_model(model, building, card, None if gate is None else gate.config)
        _replace_folder(building, root / name)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    register_bundled_model(name, _architecture(model), root)
    return root / name


def _replace_folder(new: Path, target: Path) -> None:
    """Rename the complete folder ``new`` to ``target``; an existing ``target`` is moved aside first and
    removed only once ``new`` is in place (put back if the rename fails)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{os.getpid()}.replaced")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
