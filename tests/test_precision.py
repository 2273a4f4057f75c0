"""Reduced precision: bf16 and fp16 restore close to fp32 on any CPU; auto decides by hardware and measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apollo_restore import precision
from apollo_restore.cli.arguments import PRECISIONS
from apollo_restore.errors import ApolloError
from apollo_restore.inference import Restorer
from conftest import tiny_model


@pytest.mark.parametrize("name", ["bf16", "fp16", "int8"])
def test_reduced_precision_restores_close_to_fp32_and_leaves_the_model_alone(name):
    model = tiny_model(seed=4, residual=True)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(1.0 if p.dim() == 1 else 0.0, 0.2)
    audio = (0.3 * np.random.default_rng(1).standard_normal((2, 20000))).astype(np.float32)
    reference = Restorer(model, "cpu").restore_array(audio, 44100)
    restorer = Restorer(model, "cpu", precision=name)
    assert restorer.dtype == precision.DTYPES[name]
    if name == "int8":  # every linear layer of the blocks quantised, the rest float32
        kinds = [type(m) for m in restorer.model.blocks.modules()]
        assert torch.nn.Linear not in kinds
        linears = sum(isinstance(m, torch.nn.Linear) for m in model.blocks.modules())
        assert kinds.count(torch.ao.nn.quantized.dynamic.Linear) == linears > 0
        assert all(p.dtype == torch.float32 for p in restorer.model.parameters())
    else:
        assert next(restorer.model.blocks.parameters()).dtype == precision.DTYPES[name]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the caller's model is untouched
    assert type(model.blocks[0].band.qkv) is torch.nn.Linear
    out = restorer.restore_array(audio, 44100)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    error = np.abs(out - reference).max() / np.abs(reference).max()
    # bf16 keeps 8 bits of mantissa, fp16 11; int8 activations are quantised per call to 8 bits
    assert 0 < error < {"bf16": 0.03, "fp16": 0.005, "int8": 0.01}[name]


def test_auto_picks_bf16_on_a_cpu_only_with_bf16_units_that_measure_faster(monkeypatch):
    cpu = torch.device("cpu")
    for has_units, speedup, expected in ((False, 5.0, torch.float32), (True, 1.0, torch.float32),
                                         (True, 3.0, torch.bfloat16)):
        monkeypatch.setattr(precision, "cpu_has_bf16_matmul", lambda has=has_units: has)
        monkeypatch.setattr(precision, "matmul_speedup", lambda dtype, device, s=speedup: s)
        assert precision.resolve_precision("auto", cpu) == expected
    assert precision.resolve_precision("fp16", cpu) == torch.float16
    with pytest.raises(ApolloError, match="unknown precision"):
        precision.resolve_precision("int4", cpu)
    assert precision.resolve_precision("int8", cpu) == torch.qint8  # never picked by auto
    with pytest.raises(ApolloError, match="int8 runs on the CPU only"):
        precision.resolve_precision("int8", torch.device("meta"))
    assert PRECISIONS == precision.PRECISIONS  # the CLI's spelling of the same names


def test_this_cpu_is_described_and_measured_honestly():
    """The feature test agrees with torch's own report, and the speed probe gives a finite positive ratio."""
    assert precision.cpu_has_bf16_matmul() == (torch.cpu._is_amx_tile_supported()
                                               or torch.cpu._is_avx512_bf16_supported())
    ratio = precision.matmul_speedup(torch.bfloat16, torch.device("cpu"), rows=256, dim=64, iterations=1)
    assert 0 < ratio < 1e3
