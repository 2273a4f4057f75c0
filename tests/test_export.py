"""ONNX export: the exported network through onnxruntime restores like torch, at any length and channel count."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from apollo_restore.checkpoint import save_model
from apollo_restore.cli import main
from apollo_restore.errors import ApolloError
from conftest import tiny_model

pytest.importorskip("onnxruntime")


def _trained_like(seed: int, **overrides):
    """A tiny model with weights far from their initialisation (a residual head at zero would hide errors)."""
    model = tiny_model(seed=seed, **overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(1.0 if p.dim() == 1 else 0.0, 0.2)
    return model


@pytest.mark.parametrize("residual", [False, True])
def test_onnx_engine_equals_torch_at_any_length(tmp_path, residual):
    from apollo_restore.export import OnnxApollo, export_onnx, onnx_config

    model = _trained_like(1, residual=residual)
    path = export_onnx(model, tmp_path / "m.onnx")
    assert onnx_config(path) == model.config
    engine = OnnxApollo(path, threads=1)
    for channels, samples in ((1, 9000), (3, 31000)):  # other batch and frame counts than the export example
        audio = torch.randn(1, channels, samples) * 0.2
        with torch.no_grad():
            expected, got = model(audio), engine(audio)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-4 * max(1.0, float(expected.abs().max()))


def test_export_cli_and_restore_with_the_onnx_engine(tmp_path, capsys):
    model = _trained_like(2, residual=True)
    checkpoint = save_model(model, tmp_path / "ckpt")
    audio = (0.3 * np.random.default_rng(0).standard_normal((2, 30000))).astype(np.float32)
    sf.write(tmp_path / "in.wav", audio.T, 44100, subtype="FLOAT")
    assert main(["export", "--onnx", str(checkpoint), str(tmp_path / "m.onnx")]) == 0
    assert "inputs real/imag" in capsys.readouterr().out
    outputs = {}
    for name, extra in (("torch", []), ("onnx-file", ["--engine", "onnx", "--checkpoint", str(tmp_path / "m.onnx")]),
                        ("onnx-fly", ["--engine", "onnx", "--checkpoint", str(checkpoint)])):
        argv = ["restore", str(tmp_path / "in.wav"), "-o", str(tmp_path / f"{name}.wav"), "-q"]
        argv += extra or ["--checkpoint", str(checkpoint)]
        assert main(argv) == 0
        outputs[name], _ = sf.read(tmp_path / f"{name}.wav", always_2d=True)
    for name in ("onnx-file", "onnx-fly"):
        assert np.abs(outputs[name] - outputs["torch"]).max() <= 1e-4


def test_export_refusals(tmp_path, capsys):
    from apollo_restore.export import export_onnx

    with pytest.raises(ApolloError, match="causal"):
        export_onnx(tiny_model(causal=True), tmp_path / "c.onnx")
    checkpoint = save_model(tiny_model(), tmp_path / "ckpt")
    assert main(["export", "--onnx", str(checkpoint), str(tmp_path / "m.txt")]) == 1
    sf.write(tmp_path / "x.wav", np.zeros((4410, 1), np.float32), 44100)
    assert main(["restore", str(tmp_path / "x.wav"), "--engine", "onnx", "--precision", "bf16",
                 "--checkpoint", str(checkpoint)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and ".onnx file" in errors[0] and "float32 graph" in errors[1]
    assert not (tmp_path / "m.txt").exists()
