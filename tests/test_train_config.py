"""Training configs: YAML onto typed dataclasses, one-line errors, overrides, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from apollo_restore.cli import main
from apollo_restore.errors import ApolloError
from apollo_restore.train.config import ExperimentConfig, dump_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_maps_onto_typed_sections(tmp_path):
    path = write(tmp_path, "model: {feature_dim: 32, num_layers: 1, causal: true}\n"
                           "data: {roots: [a, b], layouts: [musdb, folder], gain_db: [-3, 3]}\n"
                           "optim: {generator_betas: [0.8, 0.9]}\ntrain: {max_steps: 7, precision: bf16}\n")
    config = load_config(path)
    assert (config.model.feature_dim, config.model.num_layers, config.model.causal) == (32, 1, True)
    assert config.data.roots == ("a", "b") and config.data.gain_db == (-3.0, 3.0)
    assert config.optim.generator_betas == (0.8, 0.9) and config.optim.discriminator_betas == (0.5, 0.99)
    assert config.train.max_steps == 7 and config.train.precision == "bf16"
    assert isinstance(config.train.run_dir, Path)


def test_defaults_are_the_paper_recipe():
    config = ExperimentConfig()
    assert (config.model.feature_dim, config.model.num_layers) == (256, 6)
    assert config.discriminator.fft_sizes == (32, 64, 128, 256, 512, 1024, 2048)
    o = config.optim
    assert (o.generator_lr, o.discriminator_lr, o.weight_decay, o.lr_decay, o.lr_decay_epochs, o.grad_clip) == (
        1e-3, 1e-4, 0.01, 0.98, 2, 5.0)
    assert config.train.patience == 20
    assert (config.loss.reconstruction, config.loss.feature_matching, config.loss.adversarial) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: {bach_size: 2}\n", "unknown config key 'train.bach_size'; valid keys: run_dir, seed, batch_size"),
        ("modle: {}\n", "unknown config key 'modle'; valid keys: model, gate, inference_gate, data, validation"),
        ("data: {degrade: {bitrate: [32]}}\n", "unknown config key 'data.degrade.bitrate'; valid keys: codec"),
        ("train: {batch_size: two}\n", "config key 'train.batch_size' must be an integer"),
        ("optim: {generator_betas: [0.9]}\n", "config key 'optim.generator_betas' must hold 2 values"),
        ("train: {precision: fp8}\n", "config key 'train.precision' must be one of 'fp32', 'bf16', 'fp16'"),
        ("train: {batch_size: 0}\n", "batch_size must be >= 1"),
        ("model: {feature_dim: 30}\n", "heads of even size"),
        ("train: [1, 2]\n", "config section 'train' must be a mapping"),
        ("model: {feature_dim: 32\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ApolloError) as info:
        load_config(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_cli_reports_bad_key_and_missing_dataset_in_one_line(tmp_path, capsys):
    assert main(["train", str(write(tmp_path, "train: {epochs: 3}\n"))]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("apollo train: error:") and "unknown config key 'train.epochs'" in err
    assert "max_epochs" in err and "\n" not in err and "Traceback" not in err
    missing = tmp_path / "nowhere"
    path = write(tmp_path, f"model: {{feature_dim: 16, num_layers: 1, num_heads: 2}}\ndata: {{roots: [{missing}]}}\n"
                           f"train: {{run_dir: {tmp_path / 'run'}, device: cpu}}\n")
    assert main(["train", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("apollo train: error:") and str(missing) in err and "\n" not in err
    assert not (tmp_path / "run" / "state.pt").exists()


def test_overrides_and_round_trip(tmp_path):
    path = write(tmp_path, "train: {batch_size: 2}\n")
    config = load_config(path, ["train.batch_size=4", "loss.adversarial=0.5", "validation.directory=/v"])
    assert config.train.batch_size == 4 and config.loss.adversarial == 0.5
    assert config.validation.directory == Path("/v")
    with pytest.raises(ApolloError, match=r"unknown config key 'loss\.adv'"):
        load_config(path, ["loss.adv=1"])
    resolved = write(tmp_path, dump_config(config))
    assert load_config(resolved) == config


@pytest.mark.parametrize("name", ["paper.yaml", "cpu.yaml", "cpu-causal.yaml"])
def test_shipped_configs_load(name, monkeypatch):
    monkeypatch.setenv("APOLLO_DATA", "/data")
    config = load_config(CONFIGS / name)
    assert config.model.causal == (name == "cpu-causal.yaml")
    if name.startswith("cpu"):
        assert (config.model.feature_dim, config.model.num_layers) == (64, 2)
        assert config.validation.directory == Path("/data/realset") and config.gate is None
    if name == "paper.yaml":
        assert (config.model.feature_dim, config.model.num_layers) == (256, 6)
        assert config.train.warmup_steps == 0 and config.train.batch_size == 1


def test_a_variant_is_the_lines_that_differ_and_data_comes_from_apollo_data(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text("model: {feature_dim: 32, num_layers: 1, num_heads: 4}\n"
                                        "data: {roots: ['${APOLLO_DATA}/songs'], clip_seconds: 2.0}\n"
                                        "train: {max_steps: 7}\n")
    (tmp_path / "variant.yaml").write_text("include: base.yaml\nmodel: {causal: true}\ntrain: {max_steps: 9}\n")
    monkeypatch.setenv("APOLLO_DATA", "/data/here")
    config = load_config(tmp_path / "variant.yaml")
    assert (config.model.feature_dim, config.model.causal, config.train.max_steps) == (32, True, 9)
    assert config.data.roots == ("/data/here/songs",) and config.data.clip_seconds == 2.0
    monkeypatch.delenv("APOLLO_DATA")
    with pytest.raises(ApolloError, match=r"APOLLO_DATA.*not set"):
        load_config(tmp_path / "variant.yaml")
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\n")
    with pytest.raises(ApolloError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
