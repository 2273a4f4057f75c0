"""`apollo ship`: a tiny real training run becomes a bundled model (atomic folder, card, registry checksum)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apollo_restore import checkpoint
from apollo_restore.checkpoint import load_checkpoint, load_model
from apollo_restore.cli import main
from apollo_restore.train import ship as shipping
from apollo_restore.train.config import load_config
from apollo_restore.train.loop import train
from apollo_restore.train.records import read_metrics
from synthetic_data import write_synthetic_dataset
from test_train_loop import write_config

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """Two epochs (8 steps: 2 reconstruction-only, 2 discriminator-only, 4 GAN) of a tiny gated model, validated
    after each epoch."""
    tmp = tmp_path_factory.mktemp("ship")
    dataset = write_synthetic_dataset(tmp / "folder", "folder", n_songs=2, seconds=2.0, splits=("train", "valid"))
    run_dir = tmp / "run"
    path = write_config(tmp / "run.yaml", dataset, run_dir, max_epochs=2, discriminator_warmup_steps=2)
    path.write_text(path.read_text() + "gate:\n  below_db: 50.0\n")
    train(load_config(path))
    config = (run_dir / "config.yaml").read_text()
    assert str(tmp) in config  # the resolved config names this machine's paths: the card must not
    return run_dir


def test_ship_writes_model_card_and_registry(tmp_path, tiny_run, monkeypatch):
    notes = tmp_path / "notes.md"
    notes.write_text(f"Lineage: a tiny test run, `{tiny_run}/last`.\n")
    models = tmp_path / "models"
    assert main(["ship", str(tiny_run), "tiny", "--from", "last", "--notes", str(notes), "--into", str(models)]) == 0
    folder = models / "tiny"
    assert sorted(p.name for p in models.iterdir()) == ["registry.json", "tiny"]  # nothing left over
    registry = json.loads((models / "registry.json").read_text())
    assert registry["tiny"]["sha256"] == checkpoint.file_sha256(folder / "model.safetensors")
    assert registry["tiny"]["summary"].startswith("Apollo 16x1, 2 heads")

    monkeypatch.setattr(checkpoint, "models_root", lambda: models)
    shipped, gate = load_checkpoint("tiny")  # by name, through the registry: checksum verified
    trained, trained_gate = load_checkpoint(tiny_run / "last")
    for key, value in trained.state_dict().items():
        assert torch.equal(shipped.state_dict()[key], value), key
    assert gate.config == trained_gate.config and gate.config.below_db == 50.0
    assert json.loads((folder / "config.json").read_text()).get("gate") == \
        json.loads((tiny_run / "last" / "config.json").read_text()).get("gate")

    card = (folder / "README.md").read_text()
    records = read_metrics(tiny_run / "metrics.jsonl")
    last_val = [r for r in records if "val_si_snr" in r][-1]
    assert last_val["step"] == 8
    assert "step 8 of the 8 it logged; 4 of those steps adversarial, 2 discriminator-only (the generator frozen);" \
        in card
    assert f"| si_snr | {last_val['val_si_snr']:.3f} | {last_val['val_si_snr_input']:.3f} |" in card
    assert f"| env_corr | {last_val['val_env_corr']:.3f} |" in card
    assert "Lineage: a tiny test run, `run/last`." in card  # the notes' paths are portable too
    assert "feature_dim: 16" in card  # the resolved training config
    assert str(tiny_run.parent) not in card and "run_dir: run\n" in card  # no absolute path of this machine


def test_ship_best_takes_the_step_the_run_chose(tmp_path, tiny_run):
    record = shipping.run_record(tiny_run, "best")
    state = torch.load(tiny_run / "state.pt", weights_only=True)["progress"]
    assert record.step == state["best_step"] and record.validation["step"] == state["best_step"]
    assert record.validation["val_score"] == max(r["val_score"] for r in read_metrics(tiny_run / "metrics.jsonl")
                                                 if "val_score" in r and r["val_eligible"])
    folder = shipping.ship(tiny_run / "best", "chosen", models=tmp_path)  # a checkpoint inside a run
    assert f"checkpoint `best` of run `run`, step {record.step} of the 8" in (folder / "README.md").read_text()


def test_ship_replaces_a_model_only_with_a_complete_one(tmp_path, tiny_run, tiny_checkpoint, monkeypatch):
    models = tmp_path / "models"
    shipping.ship(tiny_checkpoint, "mine", models=models)  # a checkpoint outside any run: no training record
    old = load_file(models / "mine" / "model.safetensors")
    assert "Training:" not in (models / "mine" / "README.md").read_text()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(OSError):
        shipping.ship(tiny_run, "mine", models=models)
    assert sorted(p.name for p in models.iterdir()) == ["mine", "registry.json"]  # no half-built folder
    new = load_file(models / "mine" / "model.safetensors")
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)  # the old model, intact
    monkeypatch.undo()
    shipping.ship(tiny_run, "mine", models=models)
    assert load_model(models / "mine").config.feature_dim == 16
    assert "Training:" in (models / "mine" / "README.md").read_text()


def test_ship_refuses_bad_names_and_empty_runs(tmp_path, tiny_run):
    assert main(["ship", str(tiny_run), "../escape", "--into", str(tmp_path)]) == 1
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text("")
    assert main(["ship", str(empty), "x", "--into", str(tmp_path)]) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "escape").exists()
