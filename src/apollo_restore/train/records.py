"""What a run writes besides checkpoints: the metrics log (JSONL + TensorBoard) and a loss-curve figure.

Only rank 0 creates a :class:`MetricsLog`. ``metrics.jsonl`` holds one JSON object per line, each with
``step`` and ``epoch``; on resume the records after the resumed step are dropped (they belong to steps that
will be trained again), and TensorBoard purges them the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from apollo_restore.files import atomic_write

METRICS_FILE = "metrics.jsonl"
FIGURE_FILE = "losses.png"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl``; a torn last line (a killed run) is skipped."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` and mirrors the numbers to TensorBoard."""

    def __init__(self, run_dir: Path, resume_step: int, tensorboard: bool = True) -> None:
        self.path = run_dir / METRICS_FILE
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in kept)))
        self.file = self.path.open("a")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)

    def write(self, record: dict[str, Any]) -> None:
        """One record: ``step`` plus named numbers (and any other JSON-able fields)."""
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


def plot_losses(metrics_path: str | Path, figure_path: str | Path) -> Path | None:
    """Training losses, discriminator margin and validation metrics against step, as a PNG (atomic); None if
    nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [r for r in records if "g_rec" in r]
    valid = [r for r in records if "val_si_snr" in r]
    if not train:
        return None
    fig, grid = plt.subplots(2, 3, figsize=(16, 8))
    axes = grid.ravel()
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["g_rec"] for r in train], label="reconstruction (eq. 4)")
    if any("g_fm" in r for r in train):
        adv = [r for r in train if "g_fm" in r]
        axes[0].plot([r["step"] for r in adv], [r["g_fm"] for r in adv], label="feature matching (eq. 5)")
    axes[0].set_title("generator losses")
    adv = [r for r in train if "d_loss" in r]
    if adv and adv[0]["step"] > steps[0]:
        axes[0].axvline(adv[0]["step"], color="gray", linestyle=":", label="adversarial losses on")
    if adv:
        axes[1].plot([r["step"] for r in adv], [r["g_adv"] for r in adv], label="generator LSGAN")
        axes[1].plot([r["step"] for r in adv], [r["d_loss"] for r in adv], label="discriminator LSGAN (eq. 3)")
    axes[1].set_title("adversarial losses")
    margin = [r for r in adv if "d_margin" in r]
    if margin:
        axes[2].plot([r["step"] for r in margin], [r["d_margin"] for r in margin], label="D(real) - D(restored)")
        axes[2].axhline(0.0, color="gray", linestyle=":", label="chance")
    axes[2].set_title("discriminator real/restored margin")
    for ax, (key, title) in zip(axes[3:], (("si_snr", "validation SI-SNR (dB)"), ("visqol", "validation ViSQOL"),
                                           ("lsd_hf", "validation LSD above the cut-off")), strict=True):
        shown = [r for r in valid if f"val_{key}" in r]
        if shown:
            ax.plot([r["step"] for r in shown], [r[f"val_{key}"] for r in shown], "o-", label="restored")
            ax.plot([r["step"] for r in shown], [r[f"val_{key}_input"] for r in shown], "--", label="degraded input")
        ax.set_title(title)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    figure_path = Path(figure_path)
    atomic_write(figure_path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return figure_path
