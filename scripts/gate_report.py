"""What the input gate decides on every clip of pre-rendered test sets, against what the clean reference holds.

    python scripts/gate_report.py /work/data/valset /work/data/testset [--checkpoint default]

One CSV row per clip on stdout: cut-off (kHz), the deep edge's spread above it (bins), the cliff weight the
model writes with, and the clean reference's drop (dB) across the same cut-off (small: the reference goes on
above it, so there is something to restore; large: the source itself ends there). A summary goes to stderr.
Used to choose the gate's constants (docs/training.md, "The shipped models").
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from apollo_restore.checkpoint import load_model
from apollo_restore.model import gate

#: the clean reference "goes on" above the cut-off when it drops less than this, and "ends" when more than
GOES_ON_DB, ENDS_DB = 6.0, 10.0


def clip_row(model, clean: np.ndarray, degraded: np.ndarray) -> dict[str, float]:
    """``[samples, channels]`` each -> the gate's view of the degraded clip and the clean drop at its cut-off."""
    spec = model.stft(torch.from_numpy(degraded.T.astype(np.float32)))
    stats = [stat.sum(dim=(0, 1)) for stat in gate._frame_stats(spec, model.config.fill_below_db)]
    cutoff, weight = gate.codec_cut(*stats)
    top = int(cutoff)
    deep_edge = int(gate._top_bin(stats[3] / stats[4].clamp_min(1e-30)))
    clean_power = model.stft(torch.from_numpy(clean.T.astype(np.float32))).abs().square().sum(dim=(0, 1)).double()
    below = gate._window_mean(clean_power, cutoff - gate.CLIFF_BINS + 1, cutoff + 1)  # the gate's own windows
    above = gate._window_mean(clean_power, cutoff + gate.CLIFF_GAP, cutoff + gate.CLIFF_GAP + gate.CLIFF_BINS)
    has_above = top + gate.CLIFF_GAP < spec.shape[-1]
    clean_drop = float(10 * torch.log10((below + 1e-30) / (above + 1e-30))) if has_above else np.nan
    hz_per_bin = model.config.sample_rate / model.config.n_fft
    return {"cutoff_khz": round(top * hz_per_bin / 1000, 2), "deep_spread_bins": deep_edge - top,
            "weight": round(float(weight), 3), "clean_drop_db": round(clean_drop, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path, help="test set folders (manifest.jsonl, clean/, degraded/)")
    parser.add_argument("--checkpoint", default="default", help="model whose STFT and gate settings to use")
    args = parser.parse_args()
    model = load_model(args.checkpoint, device="cpu")
    if model.config.fill_below_db is None:
        sys.exit(f"{args.checkpoint}: this model has no input gate (fill_below_db is unset)")
    writer = csv.DictWriter(sys.stdout, ["set", "id", "bitrate", "category", "cutoff_khz", "deep_spread_bins",
                                         "weight", "clean_drop_db"])
    writer.writeheader()
    written = {"goes on": [], "ends": []}
    with torch.no_grad():
        for folder in args.sets:
            for line in (folder / "manifest.jsonl").read_text().splitlines():
                item = json.loads(line)
                clean, _ = sf.read(folder / item["clean"], always_2d=True, dtype="float32")
                degraded, _ = sf.read(folder / item["degraded"], always_2d=True, dtype="float32")
                row = clip_row(model, clean, degraded)
                writer.writerow({"set": folder.name, "id": item["id"], "bitrate": item["bitrate"],
                                 "category": item["category"], **row})
                if row["clean_drop_db"] < GOES_ON_DB:
                    written["goes on"].append(row["weight"])
                elif row["clean_drop_db"] > ENDS_DB:
                    written["ends"].append(row["weight"])
    for kind, weights in written.items():
        opened = sum(w > 0.5 for w in weights)
        print(f"reference {kind} above the cut-off: {len(weights)} clips, gate open (> 0.5) on {opened}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
