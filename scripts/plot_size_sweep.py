"""Real-music validation of several runs against the CPU-hours they trained: the size sweep's figure.

Each run directory's ``metrics.jsonl`` holds a record per validation (``val_visqol``, ``val_lsd_hf``,
``val_env_corr`` and their ``_input`` values for the MP3, with the run's ``cpu_hours`` so far: CPU time of the
training steps, validation excluded). Used for docs/training.md, "Which size":

    python scripts/plot_size_sweep.py RUNS/sweep-64x2 RUNS/sweep-96x3 RUNS/sweep-128x4 -o sweep.png --json sweep.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from apollo_restore.files import atomic_write
from apollo_restore.train.records import read_metrics

PANELS = (("visqol", "ViSQOL (higher is better)"), ("lsd_hf", "LSD above the cut-off (lower is better)"),
          ("env_corr", "envelope correlation above the cut-off"))


def validations(run: Path) -> list[dict[str, float]]:
    """The run's validation records, in step order: step, cpu_hours and the metrics of `PANELS` (and inputs)."""
    keys = [f"val_{key}{suffix}" for key, _ in PANELS for suffix in ("", "_input")]
    return [{"step": r["step"], "cpu_hours": r.get("cpu_hours", 0.0), **{k: r[k] for k in keys}}
            for r in read_metrics(run / "metrics.jsonl") if all(k in r for k in keys)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (label: the folder name)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    parser.add_argument("--json", type=Path, help="also write the plotted points as JSON")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {run.name: validations(run) for run in args.runs}
    fig, axes = plt.subplots(1, len(PANELS), figsize=(16, 4.5))
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        for name, points in curves.items():
            if points:
                ax.plot([p["cpu_hours"] for p in points], [p[f"val_{key}"] for p in points], "o-", label=name)
        first = next((points[0] for points in curves.values() if points), None)
        if first is not None:
            ax.axhline(first[f"val_{key}_input"], color="gray", linestyle=":", label="MP3")
        ax.set(title=title, xlabel="training CPU-hours")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_write(args.output, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    if args.json:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(curves, indent=1) + "\n"))
    for name, points in curves.items():
        last = points[-1] if points else None
        print(name, f"{len(points)} validations" + ("" if last is None else
              f", last: step {last['step']}, {last['cpu_hours']:.2f} CPU-h, ViSQOL {last['val_visqol']:.3f}, "
              f"LSD-HF {last['val_lsd_hf']:.3f}"))


if __name__ == "__main__":
    main()
