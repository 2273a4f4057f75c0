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
    for module in model.modules():  # frame chunks shorter than the example, as a 256x6 model's are
        if hasattr(module, "chunk"):
            module.chunk = 4
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
    checkpoint = save_model(tiny_model(), tmp_path / "ckpt")
    assert main(["export", "--onnx", str(checkpoint), str(tmp_path / "m.txt")]) == 1
    sf.write(tmp_path / "x.wav", np.zeros((4410, 1), np.float32), 44100)
    assert main(["restore", str(tmp_path / "x.wav"), "--engine", "onnx", "--precision", "bf16",
                 "--checkpoint", str(checkpoint)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and ".onnx file" in errors[0] and "float32 graph" in errors[1]
    assert not (tmp_path / "m.txt").exists()


def test_causal_export_is_the_streaming_step_with_its_state(tmp_path, capsys):
    """A causal model exports CausalStep with its conv state as an input and an output: through onnxruntime it
    continues a stream frame by frame like torch, streams (apollo stream --engine onnx) and restores offline."""
    from apollo_restore.export import OnnxApollo, OnnxCausalStep, onnx_config, state_shape
    from apollo_restore.model.step import CausalStep
    from apollo_restore.streaming import StreamingRestorer
    from test_streaming import offline, signal, stream

    model = _trained_like(2, causal=True, residual=True, num_layers=2)
    checkpoint = save_model(model, tmp_path / "ckpt")
    assert main(["export", "--onnx", str(checkpoint), str(tmp_path / "c.onnx")]) == 0
    assert "state [6, channels, 6, 80, 16]" in capsys.readouterr().out
    assert onnx_config(tmp_path / "c.onnx") == model.config and state_shape(model.config, 3) == (6, 3, 6, 80, 16)
    spec = torch.randn(3, 20, model.config.num_bins, dtype=torch.complex64)
    torch_step, onnx_step = CausalStep(model), OnnxCausalStep(model, threads=1)
    torch_state = onnx_state = None
    with torch.inference_mode():
        for start, stop in ((0, 1), (1, 2), (2, 9), (9, 20)):
            part = spec[:, start:stop]
            expected, _, torch_state = torch_step(part.real, part.imag, torch_state)
            got, _, onnx_state = onnx_step(part.real, part.imag, onnx_state)
            assert (got - expected).abs().max() <= 1e-5 * max(1.0, float(expected.abs().max()))
            if start == 2:  # a state from the torch path goes in too
                onnx_state = [[history.clone() for history in layer] for layer in torch_state]
    audio = signal(2, 30 * 441 + 17, seed=3)
    streamed = np.concatenate(stream(StreamingRestorer(model, "cpu", engine="onnx"), audio, [441, 1000, 7]), axis=1)
    assert np.abs(streamed - offline(model, audio)).max() <= 1e-5 * max(1.0, float(np.abs(audio).max()))
    with torch.no_grad():  # offline through the step graph, from a zero state
        whole = OnnxApollo(tmp_path / "c.onnx", threads=1)(torch.from_numpy(audio)[None])[0].numpy()
    assert np.abs(whole - offline(model, audio)).max() <= 1e-4
    sf.write(tmp_path / "in.wav", audio.T, 44100, subtype="FLOAT")
    assert main(["stream", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"), "--checkpoint", str(checkpoint),
                 "--device", "cpu", "--engine", "onnx"]) == 0
    restored, _ = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    np.testing.assert_allclose(restored.T, offline(model, audio), atol=1e-5, rtol=0)
    with pytest.raises(ApolloError, match="compile"):
        StreamingRestorer(model, "cpu", compile=True, engine="onnx")
    with pytest.raises(ApolloError, match="engine"):
        StreamingRestorer(model, "cpu", engine="tflite")
