"""Checkpoint selection: the selectors, the SI-SNR limit, and a run that validates on a pre-rendered set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from apollo_restore.data.mixing import MixConfig
from apollo_restore.data.testset import build_testset
from apollo_restore.train import validation
from apollo_restore.train.config import ValidationConfig, load_config
from apollo_restore.train.loop import Progress
from apollo_restore.train.loop import train as run_training
from apollo_restore.train.records import read_metrics
from synthetic_data import write_synthetic_dataset
from test_train_loop import write_config

pytestmark = pytest.mark.usefixtures("single_thread")

RESTORED = {"si_snr": 9.0, "visqol": 3.5, "lsd_hf": 0.5, "env_corr": 0.7}
INPUT = {"si_snr": 10.0, "visqol": 3.0, "lsd_hf": 1.0, "env_corr": 0.1}


def test_selectors_and_the_si_snr_limit():
    assert validation.selection_score("si_snr", RESTORED, INPUT) == 9.0
    assert validation.selection_score("visqol", RESTORED, INPUT) == 3.5
    assert validation.selection_score("lsd_hf", RESTORED, INPUT) == -0.5
    # ViSQOL gain 0.5 plus a halved LSD above the cut-off (0.5)
    assert validation.selection_score("visqol_lsd_hf", RESTORED, INPUT) == pytest.approx(1.0)
    assert validation.eligible(ValidationConfig(si_snr_limit_db=1.0), RESTORED, INPUT)
    assert not validation.eligible(ValidationConfig(si_snr_limit_db=0.5), RESTORED, INPUT)
    assert validation.eligible(ValidationConfig(), RESTORED, INPUT)
    assert validation.metric_names(ValidationConfig(select="visqol_lsd_hf")) == ("si_snr", "lsd_hf", "env_corr",
                                                                                 "visqol")


def test_means_skip_clips_without_a_value_and_add_up_over_processes():
    rows = [{"si_snr": 1.0, "lsd_hf": math.nan}, {"si_snr": 3.0, "lsd_hf": 2.0}]
    sums = np.add(validation.nan_mean_sums(rows[:1], ("si_snr", "lsd_hf")),
                  validation.nan_mean_sums(rows[1:], ("si_snr", "lsd_hf")))
    assert validation.means_from_sums(list(sums), ("si_snr", "lsd_hf")) == {"si_snr": 2.0, "lsd_hf": 2.0}
    assert validation.chosen_indices(10, 3) == [0, 4, 9] and validation.chosen_indices(2, 5) == [0, 1]
    assert validation.central(torch.arange(10.0)[None], 4).tolist() == [[3.0, 4.0, 5.0, 6.0]]


def test_states_from_before_selection_by_any_metric_resume():
    progress = Progress.from_state({"step": 5, "epoch": 1, "batch_in_epoch": 0, "best_si_snr": 7.5,
                                    "best_step": 4, "bad_epochs": 0})
    assert (progress.best_score, progress.best_step) == (7.5, 4)


def test_run_selects_on_a_pre_rendered_set_and_never_picks_an_ineligible_checkpoint(tmp_path):
    data = write_synthetic_dataset(tmp_path / "folder", "folder", n_songs=2, seconds=2.0, splits=("train", "valid"))
    mix = MixConfig(roots=(data,), layouts=("folder",), clip_seconds=1.0)
    valset = tmp_path / "valset"
    build_testset(mix, valset, n_per_bitrate=1, seed=3, split="valid")
    config_path = write_config(tmp_path / "sel.yaml", data, tmp_path / "run", max_epochs=2)
    overrides = [f"validation.directory={valset}", "validation.per_cell=1", "validation.items=2",
                 "validation.select=lsd_hf",
                 "validation.clip_seconds=0.6", "validation.si_snr_limit_db=-100"]  # SI-SNR +100 dB: impossible
    run_training(load_config(config_path, overrides))
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "val_score" in r]
    assert len(records) == 2
    for record in records:
        assert record["val_score"] == pytest.approx(-record["val_lsd_hf"])
        assert record["val_eligible"] is False and record["val_lsd_hf_input"] > 0
        assert {"val_si_snr", "val_env_corr"} <= set(record)
    assert not (tmp_path / "run" / "best").exists()
