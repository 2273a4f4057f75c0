"""Copy a trained generator from a run directory into the package as a bundled model, with its model card.

    python scripts/ship_model.py /work/runs/cpu-default default --from best --notes notes.md

Writes src/apollo_restore/assets/models/<name>/ (model.safetensors, config.json, README.md) and records its
sha256 in assets/models/registry.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from apollo_restore.checkpoint import load_checkpoint, models_root, register_bundled_model, save_model


def card(name: str, run: Path, which: str, notes: str, weights: Path, step: int | None) -> str:
    """A model card from the run's resolved config and metrics log (``step``: of a copy of the weights)."""
    model, gate = load_checkpoint(weights)
    c = model.config
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train_rows = [r for r in rows if "g_rec" in r]
    val_rows = [r for r in rows if "val_si_snr" in r]
    steps = max((r["step"] for r in rows), default=0) if step is None else step
    if step is not None:
        which, val_rows = f"copied at step {step}", [r for r in val_rows if r["step"] == step]
    elif which == "best" and val_rows:
        best_row = max(val_rows, key=lambda r: r["val_si_snr"])
        steps, val_rows = best_row["step"], [best_row]
    trained = [r for r in train_rows if r["step"] <= steps]
    hours, gan_steps = 0.0, 0
    for before, row in itertools.pairwise(trained):
        done = max(0, row["step"] - before["step"])
        hours += done / row["steps_per_sec"] / 3600
        gan_steps += done if "g_adv" in row else 0
    last_rec = f"{train_rows[-1]['g_rec']:.3f}" if train_rows else "n/a"
    val = "no validation yet"
    if val_rows:
        last = val_rows[-1]
        val = f"{last['val_si_snr']:.2f} dB (unprocessed input {last.get('val_si_snr_input', float('nan')):.2f} dB)"
    return (
        f"# apollo-restore bundled model `{name}`\n\n"
        f"- Architecture: Apollo {c.feature_dim}x{c.num_layers}, {c.num_heads} heads, {c.num_bands} bands, "
        f"{'causal' if c.causal else 'non-causal'}, residual head: {c.residual}, input gate: "
        f"{'off' if gate is None else gate.config.to_dict()}; "
        f"{model.num_parameters():,} parameters; {c.sample_rate} Hz.\n"
        f"- Data: `apollo make-data` (music21 scores rendered with FluidSynth and lossless SoundFonts, recorded "
        f"Hydrogen drum kits and guitar strums; train split only), mixed on the fly, MP3 CBR 24-128 kbit/s.\n"
        f"- Recipe: `{run / 'config.yaml'}` (copied below); checkpoint `{which}` after {steps} optimizer steps of "
        f"this run (about {gan_steps} of them adversarial), {hours:.2f} h of training on the machine it ran on.\n"
        f"- Last training reconstruction loss: {last_rec}; validation SI-SNR of this checkpoint: {val}.\n"
        f"- License: MIT (weights trained from scratch by this project; no reference weights used).\n\n"
        f"## Notes\n\n{notes}\n\n## Training config\n\n```yaml\n{(run / 'config.yaml').read_text()}```\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("--from", dest="which", default="best", choices=("best", "last"))
    parser.add_argument("--notes", type=Path, help="markdown file: lineage, what was tried, evaluation tables")
    parser.add_argument("--weights", type=Path, help="a copy of the run's weights taken at --step (instead of --from)")
    parser.add_argument("--step", type=int, help="the step --weights were copied at")
    args = parser.parse_args()
    weights = args.weights or args.run / args.which
    notes = args.notes.read_text().strip() if args.notes else ""
    text = card(args.name, args.run, args.which, notes, weights, args.step if args.weights else None)
    model, gate = load_checkpoint(weights)
    save_model(model, models_root() / args.name, text, None if gate is None else gate.config)
    register_bundled_model(args.name, text.splitlines()[2].removeprefix("- Architecture: "))
    print(f"shipped {weights} as bundled model {args.name!r}")


if __name__ == "__main__":
    main()
