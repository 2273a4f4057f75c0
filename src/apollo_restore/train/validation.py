"""Validation during training: restore a fixed subset of a set, score it, and say which checkpoint is best.

The subset is ``items`` clips evenly spaced over the set (pre-rendered sets are grouped by bitrate and
category), each optionally cut to its central ``clip_seconds``. Every validation scores the restored clips
and, once, the degraded inputs, with the metrics the selector needs (SI-SNR always). The selector turns the
means into one number, higher is better:

- ``si_snr``: mean SI-SNR (the paper's criterion, negative SI-SDR);
- ``visqol``: mean ViSQOL; ``lsd_hf``: minus the mean LSD above the codec cut-off;
- ``visqol_lsd_hf``: the mean ViSQOL gain over the input plus the mean relative LSD-HF reduction
  (``1 - lsd_hf / lsd_hf_input``), so that both count on a similar scale.

With ``si_snr_limit_db`` a checkpoint whose mean SI-SNR falls more than that below the input's is not
eligible: SI-SNR is a limit, not the selector.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from apollo_restore.train.config import ValidationConfig

#: metrics each selector needs besides SI-SNR
_NEEDS = {"si_snr": (), "visqol": ("visqol",), "lsd_hf": ("lsd_hf",), "visqol_lsd_hf": ("visqol", "lsd_hf")}
#: metrics always reported (cheap)
_ALWAYS = ("si_snr", "lsd_hf", "env_corr")


def metric_names(config: ValidationConfig) -> tuple[str, ...]:
    """The metrics one validation computes for ``config.select``."""
    return tuple(dict.fromkeys((*_ALWAYS, *_NEEDS[config.select])))


def chosen_indices(set_size: int, items: int) -> list[int]:
    """``items`` indices spread evenly over ``range(set_size)`` (fewer if the set is smaller)."""
    return [int(i) for i in np.unique(np.linspace(0, set_size - 1, items).round().astype(int))]


def central(audio: torch.Tensor, samples: int | None) -> torch.Tensor:
    """The central ``samples`` of ``[channels, n]`` (all of it when None or shorter)."""
    if samples is None or audio.shape[-1] <= samples:
        return audio
    start = (audio.shape[-1] - samples) // 2
    return audio[..., start : start + samples]


def score_example(clean: np.ndarray, degraded: np.ndarray, restored: np.ndarray | None, sample_rate: int,
                  which: tuple[str, ...]) -> dict[str, float]:
    """Metrics of ``restored`` (or of ``degraded`` itself when None) against ``clean``, ``[channels, n]`` each."""
    from apollo_restore.evaluate import metrics

    cutoff = metrics.codec_cutoff_hz(clean, degraded, sample_rate)
    values = metrics.score(clean, degraded if restored is None else restored, sample_rate, cutoff, which)
    return {name: values[name] for name in which}


def selection_score(select: str, restored: dict[str, float], degraded: dict[str, float]) -> float:
    """One number per validation, higher is better (see the module docstring)."""
    if select == "si_snr":
        return restored["si_snr"]
    if select == "visqol":
        return restored["visqol"]
    if select == "lsd_hf":
        return -restored["lsd_hf"]
    gain = restored["visqol"] - degraded["visqol"]
    reduction = 1.0 - restored["lsd_hf"] / degraded["lsd_hf"] if degraded["lsd_hf"] > 0 else 0.0
    return gain + (0.0 if math.isnan(reduction) else reduction)


def eligible(config: ValidationConfig, restored: dict[str, float], degraded: dict[str, float]) -> bool:
    """Whether a checkpoint may be chosen: SI-SNR within ``si_snr_limit_db`` of the input's (when set)."""
    limit = config.si_snr_limit_db
    return limit is None or restored["si_snr"] >= degraded["si_snr"] - limit


def nan_mean_sums(rows: list[dict[str, float]], which: tuple[str, ...]) -> list[float]:
    """Per metric: the sum of its finite values and their count, flattened ``[sum_0, n_0, sum_1, n_1, ...]``
    (so that processes can add them up before dividing)."""
    out = []
    for name in which:
        finite = [row[name] for row in rows if not math.isnan(row[name])]
        out += [float(sum(finite)), float(len(finite))]
    return out


def means_from_sums(sums: list[float], which: tuple[str, ...]) -> dict[str, float]:
    """Inverse of `nan_mean_sums` after summing: the mean of each metric (NaN where nothing was finite)."""
    return {name: sums[2 * i] / sums[2 * i + 1] if sums[2 * i + 1] else math.nan for i, name in enumerate(which)}

