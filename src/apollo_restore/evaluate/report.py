"""Reports of scored rows: per-example CSV/JSON, Table II (per category) and per-bitrate Markdown, Figure 2.

A row is one (example, system): ``id, system, bitrate, category, codec, cutoff_hz, seconds`` and the metrics
of :data:`apollo_restore.evaluate.metrics.METRICS`. ``results.json`` holds ``{"systems": {...}, "rows":
[...]}`` and is what ``--compare`` reads back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from apollo_restore.errors import ApolloError
from apollo_restore.evaluate.metrics import METRICS
from apollo_restore.files import atomic_write_text

#: Table II's columns, in the paper's order; other categories follow, then "Overall"
CATEGORY_LABELS = {"vocal": "Vocal", "single_stem": "Single Stem", "multi_stem": "Multi-Stems",
                   "multi_stem_vocal": "Multi-Stems+Vocal"}
METRIC_LABELS = {"sdr": "SDR (dB)", "si_snr": "SI-SNR (dB)", "visqol": "ViSQOL", "lsd": "LSD (lower is better)",
                 "lsd_hf": "LSD above cut-off (lower is better)", "env_corr": "envelope corr. above cut-off (median)"}
#: metrics summarised by their median rather than their mean (a correlation's mean is not meaningful)
MEDIAN_METRICS = frozenset({"env_corr"})
OVERALL = "overall"
ROW_FIELDS = ("id", "system", "bitrate", "category", "codec", "cutoff_hz", "seconds", *METRICS)


def _summary(values: Iterable[float], median: bool = False) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float((np.median if median else np.mean)(finite)) if finite else math.nan


def aggregate(rows: list[dict], by: str | tuple[str, ...] | None) -> dict[str, dict[object, dict[str, float]]]:
    """Mean of every metric per system and per value of ``by`` (``"bitrate"``/``"category"``, or a tuple of
    fields for combined groups; ``None``: all rows under ``"overall"``):
    ``{system: {group: {metric: mean, "n": count}}}``. NaNs are skipped."""
    groups: dict[str, dict[object, list[dict]]] = {}
    for row in rows:
        key = OVERALL if by is None else row[by] if isinstance(by, str) else tuple(row[b] for b in by)
        groups.setdefault(row["system"], {}).setdefault(key, []).append(row)
    return {system: {group: {"n": len(members), **{m: _summary((r.get(m) for r in members), m in MEDIAN_METRICS)
                                                               for m in METRICS}}
                     for group, members in by_group.items()}
            for system, by_group in groups.items()}


def _systems_in_order(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["system"] for row in rows))


def _cell(stats: dict | None, metrics: tuple[str, ...]) -> str:
    if stats is None:
        return "–"
    return "/".join("–" if math.isnan(stats[m]) else f"{stats[m]:.2f}" for m in metrics)


def _categories(rows: list[dict]) -> list[str]:
    present = {row["category"] for row in rows}
    return [c for c in CATEGORY_LABELS if c in present] + sorted(present - set(CATEGORY_LABELS))


def table2_markdown(rows: list[dict], systems: dict[str, dict],
                    metrics: tuple[str, ...] = ("sdr", "si_snr", "visqol")) -> str:
    """Table II: one row per system, ``SDR/SI-SNR/ViSQOL`` per category and overall, parameters (M) and RTF
    (ms to process 1 s of mono audio, on the device named in the header)."""
    by_category = aggregate(rows, "category")
    overall = aggregate(rows, None)
    categories = _categories(rows)
    counts = {c: sum(1 for r in rows if r["category"] == c and r["system"] == rows[0]["system"])
              for c in categories}
    devices = sorted({info["rtf_device"] for info in systems.values() if info.get("rtf_device")})
    header = ["System", *(f"{CATEGORY_LABELS.get(c, c)} (n={counts[c]})" for c in categories), "Overall",
              "Params (M)", f"RTF (ms, {'/'.join(devices) or '–'})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in _systems_in_order(rows):
        info = systems.get(system) or {}
        params, rtf = info.get("params"), info.get("rtf_ms")
        cells = [_cell(by_category[system].get(c), metrics) for c in categories]
        cells += [_cell(overall[system][OVERALL], metrics), f"{params / 1e6:.2f}" if params else "–",
                  f"{rtf:.0f}" if rtf else "–"]
        lines.append("| " + " | ".join([f"`{system}`", *cells]) + " |")
    return "\n".join(lines) + "\n"


def bitrate_markdown(rows: list[dict]) -> str:
    """Figure 2 as numbers: for each bitrate and system, every metric's mean."""
    by_bitrate = aggregate(rows, "bitrate")
    bitrates = sorted({row["bitrate"] for row in rows})
    header = ["Bitrate (kbps)", "System", "n", *(METRIC_LABELS[m] for m in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bitrate in bitrates:
        for system in _systems_in_order(rows):
            stats = by_bitrate[system].get(bitrate)
            if stats is None:
                continue
            values = ["–" if math.isnan(stats[m]) else f"{stats[m]:.2f}" for m in METRICS]
            lines.append("| " + " | ".join([str(bitrate or "unknown"), f"`{system}`", str(stats["n"]), *values])
                         + " |")
    return "\n".join(lines) + "\n"


def bitrate_category_markdown(rows: list[dict], metrics: tuple[str, ...] = ("si_snr", "visqol", "lsd_hf")) -> str:
    """One row per bitrate and system, one column per category: ``SI-SNR/ViSQOL/LSD above cut-off`` means."""
    cells = aggregate(rows, ("bitrate", "category"))
    by_bitrate = aggregate(rows, "bitrate")
    categories = _categories(rows)
    header = ["Bitrate (kbps)", "System", *(CATEGORY_LABELS.get(c, c) for c in categories), "All"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bitrate in sorted({row["bitrate"] for row in rows}):
        for system in _systems_in_order(rows):
            if bitrate not in by_bitrate[system]:
                continue
            row = [_cell(cells[system].get((bitrate, c)), metrics) for c in categories]
            row.append(_cell(by_bitrate[system][bitrate], metrics))
            lines.append("| " + " | ".join([str(bitrate or "unknown"), f"`{system}`", *row]) + " |")
    return "\n".join(lines) + "\n"


def plot_figure2(rows: list[dict], out_path: str | os.PathLike,
                 metrics: tuple[str, ...] = ("sdr", "si_snr", "visqol", "lsd_hf")) -> Path:
    """Figure 2: one panel per metric, mean vs bitrate, one line per system (markers at each bitrate)."""
    from matplotlib.figure import Figure

    from apollo_restore.evaluate.spectrogram import save_figure

    by_bitrate = aggregate(rows, "bitrate")
    bitrates = sorted({row["bitrate"] for row in rows})
    figure = Figure(figsize=(4.0 * len(metrics), 3.6), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    positions = np.arange(len(bitrates))
    for ax, metric in zip(axes, metrics, strict=True):
        for system in _systems_in_order(rows):
            values = [by_bitrate[system].get(b, {}).get(metric, math.nan) for b in bitrates]
            ax.plot(positions, values, marker="o", linestyle="--" if system == "input" else "-", label=system)
        ax.set_xticks(positions, [str(b or "?") for b in bitrates])
        ax.set_xlabel("bitrate (kbit/s)")
        ax.set_title(METRIC_LABELS[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return save_figure(figure, out_path)


def rows_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _json_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_report(rows: list[dict], systems: dict[str, dict], out_dir: str | os.PathLike,
                 title: str = "") -> dict[str, Path]:
    """Write results.json, results.csv, table.md and figure2.png into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in ("results.json", "results.csv", "table.md", "figure2.png")}
    payload = {"systems": systems, "rows": [{k: r.get(k) for k in ROW_FIELDS} for r in rows]}
    atomic_write_text(paths["results.json"], json.dumps(_json_safe(payload), indent=1) + "\n")
    atomic_write_text(paths["results.csv"], rows_csv(rows))
    markdown = (f"# {title or 'Evaluation'}\n\nTable II layout: SDR/SI-SNR/ViSQOL per category "
                f"(means over examples).\n\n{table2_markdown(rows, systems)}\n"
                f"LSD / LSD above the codec cut-off per category:\n\n"
                f"{table2_markdown(rows, systems, ('lsd', 'lsd_hf'))}\n"
                f"Per bitrate (Figure 2):\n\n{bitrate_markdown(rows)}\n"
                f"Per bitrate and category: SI-SNR (dB) / ViSQOL / LSD above the cut-off:\n\n"
                f"{bitrate_category_markdown(rows)}")
    atomic_write_text(paths["table.md"], markdown)
    plot_figure2(rows, paths["figure2.png"])
    return paths


def load_results(path: str | os.PathLike) -> tuple[list[dict], dict[str, dict]]:
    """Read a ``results.json`` written by :func:`write_report` (NaNs come back as NaN)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        rows = [{k: (math.nan if k in METRICS and v is None else v) for k, v in row.items()}
                for row in payload["rows"]]
        systems = dict(payload.get("systems") or {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ApolloError(f"{path}: not a results.json of apollo evaluate ({error})") from None
    return rows, systems


def merge_results(rows: list[dict], systems: dict[str, dict], other_rows: list[dict],
                  other_systems: dict[str, dict], label: str) -> tuple[list[dict], dict[str, dict]]:
    """Add another run's systems; a name that is already taken gets `` (label)`` appended. The other run's
    unprocessed-input baseline is dropped when this run already has one on the same examples."""
    ids = {system: {r["id"] for r in rows if r["system"] == system} for system in systems}
    rename = {}
    for system in _systems_in_order(other_rows):
        same_baseline = other_systems.get(system, {}).get("kind") == "input" and ids.get(system) == {
            r["id"] for r in other_rows if r["system"] == system}
        if same_baseline:
            continue
        new = system if system not in systems else f"{system} ({label})"
        if new in systems:
            raise ApolloError(f"system {new!r} appears twice: give the compared results distinct folders")
        rename[system] = new
    merged_rows = rows + [{**row, "system": rename[row["system"]]} for row in other_rows if row["system"] in rename]
    merged_systems = {**systems, **{rename[s]: other_systems.get(s, {}) for s in rename}}
    return merged_rows, merged_systems
