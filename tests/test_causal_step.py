"""CausalStep, the streaming fast path: the causal Apollo's network frame by frame, equal to spectral_forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apollo_restore.errors import ApolloError
from apollo_restore.model.step import CausalStep
from conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")


def models() -> dict[str, torch.nn.Module]:
    residual = tiny_model(5, causal=True, residual=True, num_layers=2)
    with torch.no_grad():  # the residual head starts at zero: make it write something
        for projection in residual.merge.projections:
            projection.weight.normal_(0, 0.5)
    widths = (3, 3, 3, 7, 7, 20, 100, 299)  # several runs of equal widths, one band of its own
    return {
        "plain": tiny_model(3, causal=True, num_layers=2),
        "residual": residual,
        "band runs": tiny_model(1, causal=True, num_bands=len(widths), band_widths=widths, feature_dim=24,
                                num_heads=3, conv_kernel=5, tcn_blocks=2),
    }


@pytest.mark.parametrize("name", ["plain", "residual", "band runs"])
def test_step_equals_spectral_forward_and_continues_its_state(name):
    model = models()[name]
    spec = torch.randn(3, 40, model.config.num_bins, dtype=torch.complex64)
    step = CausalStep(model)
    with torch.inference_mode():
        expected, _ = model.spectral_forward(spec)
        got, state, start = [], None, 0
        for frames in (1, 1, 3, 7, 1, 12, 15):  # one frame per call, and pending frames batched
            real, imag, state = step(spec.real[:, start : start + frames], spec.imag[:, start : start + frames],
                                     state)
            got.append(torch.complex(real, imag))
            start += frames
        assert torch.cat(got, dim=1).sub(expected).abs().max() <= 1e-5
        assert expected.sub(spec).abs().max() > 0.1  # the network did change the spectrum
        # the two paths hand their conv state to each other
        head, model_state = model.spectral_forward(spec[:, :9])
        real, imag, step_state = step(spec.real[:, 9:20], spec.imag[:, 9:20], model_state)
        tail, _ = model.spectral_forward(spec[:, 20:], step_state)
        mixed = torch.cat([head, torch.complex(real, imag), tail], dim=1)
        assert mixed.sub(expected).abs().max() <= 1e-5


def test_step_copies_the_weights_and_refuses_an_offline_model():
    model = tiny_model(3, causal=True)
    step = CausalStep(model)
    spec = torch.randn(1, 4, model.config.num_bins, dtype=torch.complex64)
    with torch.no_grad():
        before = step(spec.real, spec.imag)[0].clone()
        for parameter in model.parameters():
            parameter.zero_()
        np.testing.assert_array_equal(step(spec.real, spec.imag)[0].numpy(), before.numpy())
    with pytest.raises(ApolloError, match="causal"):
        CausalStep(tiny_model(0))
