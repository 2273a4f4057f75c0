"""The training loop end to end on a tiny on-disk dataset: run directory, resume, signals, torchrun / DDP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from apollo_restore.checkpoint import load_model
from apollo_restore.errors import ApolloError
from apollo_restore.train.config import load_config
from apollo_restore.train.loop import train as run_training
from apollo_restore.train.records import read_metrics
from bad_inputs import flip_tensor_bytes
from synthetic_data import write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "model": {"feature_dim": 16, "num_layers": 1, "num_heads": 2},
    "data": {"layouts": ["folder"], "clip_seconds": 0.5, "degrade": {"bitrates": [32, 64]}},
    "validation": {"items": 1},
    "discriminator": {"fft_sizes": [64, 256], "hidden_channels": 4},
    "loss": {"fft_sizes": [64, 256]},
    "train": {"batch_size": 1, "epoch_size": 4, "max_epochs": 3, "warmup_steps": 2, "num_workers": 0,
              "save_every_steps": 100, "log_every_steps": 1, "device": "cpu", "progress": False},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-data") / "folder"
    return write_synthetic_dataset(root, "folder", n_songs=2, seconds=2.0, splits=("train", "valid"))


def write_config(path: Path, dataset: Path, run_dir: Path, **train) -> Path:
    config = json.loads(json.dumps(TINY))
    config["data"]["roots"] = [str(dataset)]
    config["train"].update(run_dir=str(run_dir), **train)
    path.write_text(yaml.safe_dump(config))
    return path


def run(tmp_path: Path, dataset: Path, name: str, **train) -> Path:
    run_dir = tmp_path / name
    train_config = load_config(write_config(tmp_path / f"{name}.yaml", dataset, run_dir, **train))
    run_training(train_config)
    return run_dir


def training_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "state.pt", weights_only=True)  # plain tensors and numbers: no pickled code


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_run_directory_holds_everything(tmp_path, dataset):
    run_dir = run(tmp_path, dataset, "run", max_epochs=2, discriminator_warmup_steps=2)
    for name in ("config.yaml", "state.pt", "metrics.jsonl", "losses.png", "last/model.safetensors",
                 "best/model.safetensors", "best/README.md"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(run_dir / "config.yaml").model.feature_dim == 16
    state = training_state(run_dir)
    assert state["progress"]["step"] == 8 and state["progress"]["epoch"] == 2
    assert set(state["trainer"]) == {"generator", "discriminator", "g_opt", "d_opt", "g_sched", "d_sched",
                                     "g_scaler", "d_scaler"}
    assert state["trainer"]["g_sched"]["last_epoch"] == 2
    records = read_metrics(run_dir / "metrics.jsonl")
    steps = [r["step"] for r in records if "d_loss" in r or "g_rec" in r]
    assert steps == list(range(1, 9))
    assert all("d_loss" not in r for r in records if r.get("step", 0) <= 2)  # reconstruction-only warm-up
    # then 2 discriminator-only steps against the frozen generator, then the GAN
    assert [r["step"] for r in records if "d_loss" in r and "g_rec" not in r] == [3, 4]
    assert all("d_loss" in r and "g_fm" in r for r in records if "g_rec" in r and r["step"] > 2)
    assert [r["epoch"] for r in records if "val_si_snr" in r] == [1, 2]
    hours = [r["cpu_hours"] for r in records if "d_loss" in r or "g_rec" in r]
    assert hours == sorted(hours) and hours[0] > 0  # CPU time spent in training steps, accumulated
    assert state["progress"]["train_hours"] == pytest.approx(max(r["train_hours"] for r in records))
    model = load_model(run_dir / "last")
    assert_same_tensors(model.state_dict(), state["trainer"]["generator"])
    x = torch.randn(1, 2, 4410)
    assert model(x).shape == x.shape


def test_resumed_run_reaches_the_same_weights(tmp_path, dataset):
    straight = run(tmp_path, dataset, "straight", max_steps=6)
    stopped = run(tmp_path, dataset, "resumed", max_steps=3)  # stops mid-epoch, inside the warm-up boundary
    assert training_state(stopped)["progress"]["batch_in_epoch"] == 3
    resumed = run(tmp_path, dataset, "resumed", max_steps=6)
    a, b = training_state(straight), training_state(resumed)
    timing = ("train_hours", "cpu_hours")  # the clock, not the trajectory
    assert {k: v for k, v in a["progress"].items() if k not in timing} == \
        {k: v for k, v in b["progress"].items() if k not in timing}
    for net in ("generator", "discriminator"):
        assert_same_tensors(a["trainer"][net], b["trainer"][net])
    for opt in ("g_opt", "d_opt"):
        for key, value in a["trainer"][opt]["state"].items():
            assert_same_tensors(value, b["trainer"][opt]["state"][key])
    steps = [r["step"] for r in read_metrics(resumed / "metrics.jsonl") if "g_rec" in r]
    assert steps == list(range(1, 7))
    other = load_config(write_config(tmp_path / "other.yaml", dataset, resumed), ["model.feature_dim=32"])
    with pytest.raises(ApolloError, match="different 'model' config"):
        run_training(other)


def test_torn_or_foreign_state_is_a_one_line_error(tmp_path, dataset):
    run_dir = tmp_path / "torn"
    run_dir.mkdir()
    (run_dir / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ApolloError, match="cannot read training state") as info:
        run_training(load_config(write_config(tmp_path / "torn.yaml", dataset, run_dir)))
    assert "\n" not in str(info.value)


def test_early_stopping_after_patience_validations_without_gain(tmp_path, dataset):
    # a frozen generator (lr 0) gives the same validation SI-SNR every epoch: never better than the first
    run_dir = tmp_path / "frozen"
    config = load_config(write_config(tmp_path / "frozen.yaml", dataset, run_dir, patience=2, max_epochs=10,
                                      epoch_size=2),
                         ["optim.generator_lr=0.0"])
    assert run_training(config).startswith("early stopping")
    progress = training_state(run_dir)["progress"]
    assert (progress["epoch"], progress["bad_epochs"], progress["best_step"]) == (3, 2, 2)
    values = {r["val_si_snr"] for r in read_metrics(run_dir / "metrics.jsonl") if "val_si_snr" in r}
    assert len(values) == 1


def test_validation_at_start_scores_the_starting_point_and_keeps_it_as_best(tmp_path, dataset):
    # a frozen generator never beats its starting point: with at_start, step 0 stays the best and is in best/
    run_dir = tmp_path / "at-start"
    config = load_config(write_config(tmp_path / "at-start.yaml", dataset, run_dir, patience=2, max_epochs=10,
                                      epoch_size=2),
                         ["optim.generator_lr=0.0", "validation.at_start=true"])
    assert run_training(config).startswith("early stopping")
    progress = training_state(run_dir)["progress"]
    assert (progress["epoch"], progress["bad_epochs"], progress["best_step"]) == (2, 2, 0)
    validations = [r for r in read_metrics(run_dir / "metrics.jsonl") if "val_si_snr" in r]
    assert [r["step"] for r in validations] == [0, 2, 4]
    assert "at step 0." in (run_dir / "best" / "README.md").read_text()


def _wait_for_step(run_dir: Path, process: subprocess.Popen, step: int, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "g_rec" in r]
        if steps and steps[-1] >= step:
            return steps[-1]
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout} s")


def test_sigkill_then_sigint_never_loses_more_than_unsaved_steps(tmp_path, dataset):
    run_dir = tmp_path / "killed"
    config = write_config(tmp_path / "killed.yaml", dataset, run_dir, epoch_size=400, max_epochs=1,
                          save_every_steps=1, num_workers=1)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "apollo_restore", "train", str(config)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = _wait_for_step(run_dir, process, 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = training_state(run_dir)["progress"]["step"]  # loads: the kill never leaves a torn state
    assert seen - 1 <= saved <= seen + 1
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = _wait_for_step(run_dir, process, saved + 2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"resuming {run_dir} at step {saved}" in out and "interrupted" in out
    state = training_state(run_dir)
    last_logged = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "g_rec" in r][-1]
    assert state["progress"]["step"] == last_logged >= seen  # SIGINT saves after the step in flight
    load_model(run_dir / "last")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from apollo_restore.mapping import from_mapping
    from apollo_restore.train.config import ExperimentConfig
    from apollo_restore.train.distributed import init_distributed, shutdown_distributed
    from apollo_restore.train.gan import GANTrainer

    ctx = init_distributed("cpu")
    torch.manual_seed(0)
    config = {k: v for k, v in TINY.items() if k != "data"}
    config["model"] = {**TINY["model"], "causal": True, "residual": True}  # (torchrun test: the plain variant)
    trainer = GANTrainer(from_mapping(ExperimentConfig, config), ctx)
    g = torch.Generator().manual_seed(100 + rank)  # every rank sees different data
    result = {"inputs": []}
    for adversarial in (False, True, True):
        clean = 0.3 * torch.randn(1, 2, 11025, generator=g)
        result["inputs"].append(clean)
        trainer.step(0.5 * clean, clean, adversarial=adversarial)
        nets = [("generator", trainer.generator)] + [("discriminator", trainer.discriminator)] * adversarial
        for name, net in nets:
            result.setdefault(f"{name}_grads", []).append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    result["generator"] = trainer.generator.state_dict()
    result["discriminator"] = trainer.discriminator.state_dict()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    shutdown_distributed()


def test_two_process_ddp_keeps_gradients_and_weights_identical(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert not torch.equal(r0["inputs"][0], r1["inputs"][0])
    for key in ("generator_grads", "discriminator_grads"):
        for a, b in zip(r0[key], r1[key], strict=True):
            assert a.abs().sum() > 0 and torch.equal(a, b), key
    for net in ("generator", "discriminator"):
        assert_same_tensors(r0[net], r1[net])


def test_torchrun_two_processes_rank_zero_writes(tmp_path, dataset):
    run_dir = tmp_path / "ddp"
    config = write_config(tmp_path / "ddp.yaml", dataset, run_dir, max_steps=3, epoch_size=8)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "apollo_restore", "train", str(config)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("reached max_steps 3") == 1  # rank 0 alone reports
    state = training_state(run_dir)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["progress"]["step"] == 3
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "g_rec" in r]
    assert steps == [1, 2, 3]  # one writer: no duplicated records
    load_model(run_dir / "last")


def test_a_corrupt_state_is_refused_and_an_interrupted_save_still_resumes(tmp_path, dataset, capsys):
    config = load_config(write_config(tmp_path / "c.yaml", dataset, tmp_path / "run", max_steps=2))
    run_training(config)
    run_dir = tmp_path / "run"
    state_path, checksum = run_dir / "state.pt", run_dir / "state.pt.sha256"
    good = state_path.read_bytes()
    assert checksum.read_text().split()[0] == hashlib.sha256(good).hexdigest()
    flip_tensor_bytes(state_path)
    torch.load(state_path, weights_only=True)  # the corruption is silent to torch.load ...
    with pytest.raises(ApolloError, match="does not match its checksum") as info:  # ... but not to the checksum
        run_training(load_config(write_config(tmp_path / "c2.yaml", dataset, run_dir, max_steps=3)))
    assert "\n" not in str(info.value)
    # killed after the checksum file was replaced but before state.pt was: the old state is still accepted
    state_path.write_bytes(good)
    checksum.write_text(f"{'0' * 64}  state.pt\n{hashlib.sha256(good).hexdigest()}  state.pt (previous)\n")
    capsys.readouterr()
    run_training(load_config(write_config(tmp_path / "c3.yaml", dataset, run_dir, max_steps=3)))
    assert "resuming" in capsys.readouterr().out and training_state(run_dir)["progress"]["step"] == 3


def test_a_state_with_pickled_code_is_refused_even_with_a_matching_checksum(tmp_path, dataset):
    from test_checkpoint import _Evil

    run_dir = tmp_path / "evil"
    run_dir.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"trainer": _Evil(marker)}, run_dir / "state.pt")
    digest = hashlib.sha256((run_dir / "state.pt").read_bytes()).hexdigest()
    (run_dir / "state.pt.sha256").write_text(f"{digest}  state.pt\n")
    with pytest.raises(ApolloError, match="cannot read training state"):
        run_training(load_config(write_config(tmp_path / "e.yaml", dataset, run_dir)))
    assert not marker.exists()


def test_a_run_carried_to_a_new_machine_resumes_where_it_stopped(tmp_path, dataset, monkeypatch):
    """`scripts/carry_run.py`: save a stopped run, move its data, restore it elsewhere: it resumes exactly."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("carry_run", REPO / "scripts" / "carry_run.py")
    carry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(carry)
    straight = run(tmp_path, dataset, "straight", max_steps=6)
    stopped = run(tmp_path, dataset, "stopped", max_steps=3)
    monkeypatch.setenv("APOLLO_DATA", str(dataset.parent))
    carry.save(stopped, tmp_path / "carry" / "long")
    carried_config = (tmp_path / "carry" / "long" / "config.yaml").read_text()
    assert "${APOLLO_DATA}/folder" in carried_config and str(tmp_path) not in carried_config
    moved = tmp_path / "new-machine" / "data"  # the data regenerated somewhere else
    shutil.copytree(dataset.parent, moved)
    monkeypatch.setenv("APOLLO_DATA", str(moved))
    resumed_dir = tmp_path / "new-machine" / "run"
    carry.restore(tmp_path / "carry" / "long", resumed_dir)
    assert list(load_config(resumed_dir / "config.yaml").data.roots) == [str(moved / "folder")]
    config = load_config(write_config(tmp_path / "moved.yaml", moved / "folder", resumed_dir, max_steps=6))
    run_training(config)
    a, b = training_state(straight), training_state(resumed_dir)
    assert b["progress"]["step"] == 6
    for net in ("generator", "discriminator"):
        assert_same_tensors(a["trainer"][net], b["trainer"][net])
    with pytest.raises(SystemExit, match="lacks"):
        carry.save(tmp_path / "new-machine", tmp_path / "carry" / "bad")
