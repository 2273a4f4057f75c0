"""`apollo data-stats`: how much sets of audio look like real records, statistic by statistic.

A set is a pre-rendered pair set (its clean files), a stem dataset in the ``folder`` layout (clips of the
songs' mixtures, the sum of their stems) or any folder of audio files (each file whole). Every clip gets
:func:`apollo_restore.data.stats.clip_stats`; the report compares each set's median with the last set's
(the reference's) interquartile range, as a markdown table, one figure overlaying the sets, and CSV files.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apollo_restore.audio import INPUT_EXTENSIONS, audio_info, read_audio, resample
from apollo_restore.data.activity import read_segment
from apollo_restore.data.layouts import SPLITS, discover
from apollo_restore.data.stats import SCALARS, THIRD_OCTAVE_HZ, clip_stats
from apollo_restore.data.testset import MANIFEST, load_manifest
from apollo_restore.errors import ApolloError
from apollo_restore.files import atomic_write, atomic_write_text

SAMPLE_RATE = 44100
#: every statistic of a clip, in table order
STATISTICS = tuple(f"band_{f}" for f in THIRD_OCTAVE_HZ) + tuple(SCALARS)
#: windows quieter than this (RMS, dBFS) are not drawn as clips from songs
QUIET_DBFS = -50.0


@dataclass
class ClipSource:
    """Where one clip comes from: a whole file, or ``length`` samples from ``start`` of files summed."""

    name: str
    paths: tuple[Path, ...]
    start: int = 0
    length: int | None = None

    def read(self) -> np.ndarray:
        """The clip at SAMPLE_RATE, float32 ``[channels, samples]``."""
        if self.length is None:
            audio, rate = read_audio(self.paths[0])
        else:
            rate = audio_info(self.paths[0]).sample_rate
            audio = read_segment(self.paths, self.start, self.length)
        return resample(audio, rate, SAMPLE_RATE)


def _song_clips(root: Path, splits: tuple[str, ...], clips: int, seconds: float, seed: int) -> list[ClipSource]:
    """``clips`` windows of ``seconds`` from the songs' mixtures: songs in a seeded order, round robin, each
    window at a random start."""
    songs = [song for split in splits for song in discover("folder", root, split)]
    if not songs:
        return []
    rng = np.random.default_rng(seed)
    order = [songs[i] for i in rng.permutation(len(songs))]
    sources = []
    for k in range(clips * 4):  # quiet windows are skipped; give up after 4 tries per clip on average
        if len(sources) == clips:
            break
        song = order[k % len(order)]
        paths = (song.mixture,) if song.mixture else tuple(p for s in song.stems for p in s.paths)
        info = audio_info(paths[0])
        length = round(seconds * info.sample_rate)
        if info.length < length:
            continue
        start = int(rng.integers(info.length - length + 1))
        source = ClipSource(f"{song.name}@{start / info.sample_rate:.1f}s", paths, start, length)
        audio = source.read()
        if 10 * np.log10(max(float(np.mean(np.square(audio))), 1e-20)) > QUIET_DBFS:
            sources.append(source)
    return sources


def clip_sources(path: str | os.PathLike, clips: int = 200, seconds: float = 10.0, seed: int = 0,
                 splits: tuple[str, ...] = SPLITS) -> list[ClipSource]:
    """The clips of a set (see module docstring): a pair set's clean files (each once), ``clips`` windows
    of ``seconds`` from a stem dataset's ``splits``, or every audio file under a folder."""
    path = Path(path)
    if not path.exists():
        raise ApolloError(f"{path}: no such set")
    if path.is_file():
        return [ClipSource(path.stem, (path,))]
    if (path / MANIFEST).is_file():
        cleans = dict.fromkeys(example.clean for example in load_manifest(path))
        return [ClipSource(p.stem, (p,)) for p in cleans]
    if any((path / split).is_dir() for split in SPLITS) or next(path.glob("*/meta.json"), None):
        sources = _song_clips(path, splits, clips, seconds, seed)
        if not sources:
            raise ApolloError(f"{path}: no songs of at least {seconds:g} s in split(s) {', '.join(splits)}")
        return sources
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise ApolloError(f"{path}: no pair set, stem dataset or audio files found")
    return [ClipSource(str(p.relative_to(path).with_suffix("")), (p,)) for p in files]


def measure(sources: list[ClipSource], progress: bool = False, desc: str = "") -> list[dict]:
    """``clip_stats`` of every clip, with its name, seconds and channels."""
    from tqdm import tqdm

    rows = []
    for source in tqdm(sources, desc=desc or "measuring", unit="clip", disable=not progress):
        audio = source.read()
        rows.append({"clip": source.name, "seconds": round(audio.shape[1] / SAMPLE_RATE, 3),
                     "channels": audio.shape[0], **clip_stats(audio, SAMPLE_RATE)})
    return rows


def measured_rows(argument: str) -> list[dict] | None:
    """The rows of one set from an earlier report's ``clips.csv``, for a set argument ``CLIPS.csv:NAME``;
    None when ``argument`` is not of that form."""
    path, _, name = argument.rpartition(":")
    if not path.endswith(".csv") or not name:
        return None
    try:
        with open(path, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["set"] == name]
    except (OSError, KeyError) as error:
        raise ApolloError(f"{path}: cannot read a clips.csv ({error})") from None
    if not rows:
        raise ApolloError(f"{path}: no clips of set {name!r}")
    numeric = ("seconds", "channels", *STATISTICS)
    return [{"clip": row["clip"], **{k: float(row[k]) for k in numeric}} for row in rows]


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per statistic: median, q25, q75 and n over the clips where it is defined (not NaN)."""
    summary = {}
    for name in STATISTICS:
        values = np.array([row[name] for row in rows], np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            q25, median, q75 = np.percentile(values, [25, 50, 75])
            summary[name] = {"median": float(median), "q25": float(q25), "q75": float(q75), "n": int(values.size)}
        else:
            summary[name] = {"median": float("nan"), "q25": float("nan"), "q75": float("nan"), "n": 0}
    return summary


def ks_distance(rows: list[dict], reference: list[dict], name: str) -> float:
    """Two-sample Kolmogorov-Smirnov distance of a statistic between two sets (0: same distribution, 1: no
    overlap); NaN when either has no defined value."""
    from scipy.stats import ks_2samp

    a = np.array([row[name] for row in rows], np.float64)
    b = np.array([row[name] for row in reference], np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return float(ks_2samp(a, b).statistic) if a.size and b.size else float("nan")


def inside(value: dict, reference: dict) -> bool:
    """Whether a set's median lies in the reference set's interquartile range."""
    return bool(reference["n"] and value["n"] and reference["q25"] <= value["median"] <= reference["q75"])


def _label(name: str) -> str:
    if name.startswith("band_"):
        hz = int(name.split("_")[1])
        return f"1/3-oct {hz / 1000:g} kHz (dB re total)"
    return SCALARS[name][1]


def _cell(stat: dict) -> str:
    if not stat["n"]:
        return "–"
    return f"{stat['median']:.2f} [{stat['q25']:.2f}, {stat['q75']:.2f}]"


def markdown_table(names: list[str], summaries: list[dict], clip_counts: list[int],
                   distances: list[dict[str, float]]) -> str:
    """One row per statistic: median [q25, q75] of each set; after each non-reference set's cell, whether its
    median is inside the reference's (last set's) IQR and the KS distance of the two distributions."""
    reference = summaries[-1]
    header = ["statistic"] + [f"{n} (n={c})" for n, c in zip(names[:-1], clip_counts[:-1], strict=True)]
    header.append(f"{names[-1]} (n={clip_counts[-1]}, reference)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stat in STATISTICS:
        cells = [_label(stat)]
        for summary, distance in zip(summaries[:-1], distances, strict=True):
            mark = "in" if inside(summary[stat], reference[stat]) else "**out**"
            cells.append(f"{_cell(summary[stat])} {mark}, KS {distance[stat]:.2f}" if summary[stat]["n"] else "–")
        cells.append(_cell(reference[stat]))
        lines.append("| " + " | ".join(cells) + " |")
    met = [f"{name} {sum(inside(s[k], reference[k]) for k in STATISTICS)}/{len(STATISTICS)}"
           for name, s in zip(names[:-1], summaries[:-1], strict=True)]
    lines.append("")
    lines.append("Cells: median [25th, 75th percentile] over clips; `in` / `out`: the set's median inside / outside "
                 "the reference's interquartile range; KS: two-sample Kolmogorov-Smirnov distance to the reference "
                 f"(0 same distribution, 1 disjoint). Inside: {', '.join(met)}.")
    return "\n".join(lines) + "\n"


def plot(names: list[str], rows: list[list[dict]], path: Path) -> None:
    """One figure: band energies (median line, IQR band) and one box per set for each scalar statistic."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    axes = axes.ravel()
    bands = [f"band_{f}" for f in THIRD_OCTAVE_HZ]
    for k, (name, set_rows) in enumerate(zip(names, rows, strict=True)):
        values = np.array([[row[b] for b in bands] for row in set_rows])
        q25, median, q75 = np.percentile(values, [25, 50, 75], axis=0)
        axes[0].fill_between(THIRD_OCTAVE_HZ, q25, q75, color=colours[k % len(colours)], alpha=0.2)
        axes[0].plot(THIRD_OCTAVE_HZ, median, "o-", color=colours[k % len(colours)], label=name)
    axes[0].set_xscale("log")
    axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].set_xticks(THIRD_OCTAVE_HZ[::2], [f"{f / 1000:g}k" for f in THIRD_OCTAVE_HZ[::2]])
    axes[0].set_title("1/3-octave band energy re clip total (median, IQR)", fontsize=9)
    axes[0].set_ylabel("dB")
    axes[0].legend(fontsize=8)
    for ax, stat in zip(axes[1:], SCALARS, strict=False):
        data = []
        for set_rows in rows:
            values = np.array([row[stat] for row in set_rows], np.float64)
            data.append(values[np.isfinite(values)])
        boxes = ax.boxplot([d if d.size else [np.nan] for d in data], patch_artist=True, widths=0.6)
        for k, box in enumerate(boxes["boxes"]):
            box.set_facecolor(colours[k % len(colours)])
            box.set_alpha(0.5)
        ax.set_xticks(range(1, len(names) + 1), names, fontsize=7, rotation=15)
        ax.set_title(SCALARS[stat][0], fontsize=9)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png"))
    plt.close(figure)


def _csv_text(rows: list[dict], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_report(names: list[str], rows: list[list[dict]], out_dir: str | os.PathLike) -> dict[str, Path]:
    """``table.md``, ``figure.png``, ``clips.csv`` (every clip's statistics), ``summary.csv`` and
    ``summary.json`` (per set and statistic: median, q25, q75, n, inside the reference IQR, KS distance)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = [summarise(r) for r in rows]
    distances = [{k: ks_distance(r, rows[-1], k) for k in STATISTICS} for r in rows]
    paths = {"table": out_dir / "table.md", "figure": out_dir / "figure.png", "clips": out_dir / "clips.csv",
             "summary": out_dir / "summary.csv", "json": out_dir / "summary.json"}
    atomic_write_text(paths["table"], markdown_table(names, summaries, [len(r) for r in rows], distances[:-1]))
    plot(names, rows, paths["figure"])
    fields = ["set", "clip", "seconds", "channels", *STATISTICS]
    atomic_write_text(paths["clips"], _csv_text([{"set": n, **row} for n, r in zip(names, rows, strict=True)
                                                 for row in r], fields))
    summary_rows = [{"set": n, "statistic": k, **s[k], "inside_reference_iqr": inside(s[k], summaries[-1][k]),
                     "ks_distance": round(d[k], 4)}
                    for n, s, d in zip(names, summaries, distances, strict=True) for k in STATISTICS]
    atomic_write_text(paths["summary"], _csv_text(summary_rows, ["set", "statistic", "median", "q25", "q75", "n",
                                                                 "inside_reference_iqr", "ks_distance"]))
    atomic_write_text(paths["json"], json.dumps({"sets": names, "reference": names[-1],
                                                 "summary": dict(zip(names, summaries, strict=True)),
                                                 "ks_distance": dict(zip(names, distances, strict=True))}, indent=1))
    return paths
