import numpy as np
import pytest
import torch

from apollo_restore.errors import ApolloError
from apollo_restore.model import Apollo, ApolloConfig
from apollo_restore.model.bands import band_runs
from conftest import tiny_config, tiny_model


def test_paper_config_has_the_papers_parameter_count():
    assert Apollo(ApolloConfig()).num_parameters() == 16_539_308


def test_default_band_layout_matches_the_reference():
    config = ApolloConfig()
    assert (config.n_fft, config.hop, config.num_bins) == (882, 441, 442)
    assert config.widths == (5,) * 79 + (47,)
    assert [(r.bands, r.width) for r in band_runs(config.widths)] == [(79, 5), (1, 47)]
    assert config.context_frames == (54, 54)
    assert ApolloConfig(causal=True).context_frames == (108, 0)


def test_config_round_trips_and_rejects_unknown_keys():
    config = tiny_config(causal=True)
    assert ApolloConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ApolloError, match=r"unknown config key 'model\.feature_dims'"):
        ApolloConfig.from_dict({**config.to_dict(), "feature_dims": 3})
    with pytest.raises(ApolloError, match="heads"):
        ApolloConfig(feature_dim=30, num_heads=4)


def test_output_shape_and_silence_gives_finite_output():
    model = tiny_model()
    for length in (1, 300, 44100):
        audio = torch.zeros(2, 3, length)
        with torch.no_grad():
            out = model(audio)
        assert out.shape == audio.shape
        assert torch.isfinite(out).all()


def test_channels_are_independent_and_share_weights():
    model = tiny_model()
    audio = torch.randn(1, 2, 8000) * 0.1
    with torch.no_grad():
        both = model(audio)
        left = model(audio[:, :1])
        swapped = model(audio.flip(1))
    torch.testing.assert_close(both[:, :1], left, atol=1e-5, rtol=0)
    torch.testing.assert_close(swapped.flip(1), both, atol=1e-5, rtol=0)


def test_causal_model_does_not_look_ahead_beyond_one_window():
    model = tiny_model(causal=True)
    config = model.config
    audio = torch.randn(1, 1, 30 * config.hop) * 0.1
    changed = audio.clone()
    cut = 20 * config.hop
    changed[..., cut:] = torch.randn_like(changed[..., cut:])
    with torch.no_grad():
        a, b = model(audio), model(changed)
    # samples more than one window before the change are untouched, later ones change
    torch.testing.assert_close(a[..., : cut - config.n_fft], b[..., : cut - config.n_fft], atol=1e-6, rtol=0)
    assert (a[..., cut:] - b[..., cut:]).abs().max() > 1e-4


def test_non_causal_model_does_look_ahead():
    model = tiny_model()
    audio = torch.randn(1, 1, 30 * model.config.hop) * 0.1
    changed = audio.clone()
    changed[..., 20 * model.config.hop :] = 0
    with torch.no_grad():
        diff = (model(audio) - model(changed))[..., : 20 * model.config.hop - model.config.n_fft]
    assert diff.abs().max() > 1e-6


def test_level_of_input_changes_output_only_through_the_model():
    """Gain-shape features: a silent band next to a loud one stays finite and the model is not trivially linear."""
    model = tiny_model()
    t = torch.arange(44100) / 44100
    tone = torch.sin(2 * torch.pi * 440 * t)[None, None]
    with torch.no_grad():
        loud, quiet = model(tone), model(tone * 1e-3)
    assert np.isfinite(loud.numpy()).all() and np.isfinite(quiet.numpy()).all()
    assert not torch.allclose(loud * 1e-3, quiet, atol=1e-7)


def test_residual_model_starts_as_the_identity_and_still_learns():
    model = tiny_model(residual=True)
    audio = torch.randn(1, 2, 20000) * 0.1
    with torch.no_grad():
        out = model(audio)
    torch.testing.assert_close(out, audio, atol=1e-5, rtol=0)
    loss = model(audio).sub(audio.flip(-1)).abs().mean()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.merge.parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    audio = torch.randn(1, 2, 8000) * 0.1
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(num_layers=2).train()
        model.gradient_checkpointing = checkpointing
        model(audio).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_residual_correction_follows_the_frame_level():
    """The correction is in units of its frame's level: 60 dB quieter in, about 60 dB smaller correction out;
    a silent frame inside the music gets none."""
    model = tiny_model(residual=True)
    with torch.no_grad():
        for projection in model.merge.projections:
            projection.weight.normal_(0, 0.5)
        audio = torch.randn(1, 1, 22050) * 0.3
        correction = [(model(audio * gain) / gain - audio).square().mean().sqrt() for gain in (1.0, 1e-3)]
        assert correction[0] > 1e-2  # the head does change the signal
        assert 0.1 < correction[0] / correction[1] < 10
        spec = model.framing.stft(audio[0])
        spec[:, 20:30] = 0
        out, _ = model.spectral_forward(spec)
    assert out[:, 20:30].abs().max() == 0 and out[:, 40:].abs().max() > 0


@pytest.mark.parametrize("causal", [False, True])
def test_inference_chunks_equal_one_pass_over_all_frames(causal):
    """Chunked inference (several channels, chunks cutting through the conv windows) equals the single pass
    that training runs, and so does a causal model fed in two pieces with its state."""
    from apollo_restore.model.bands import BandMerge, BandSplit
    from apollo_restore.model.layers import BandTransformer, TemporalConvBlock, spans

    assert spans(103, 102) == [(0, 52), (52, 103)] and spans(5, 10) == [(0, 5)]
    model = tiny_model(causal=causal)
    spec = model.framing.stft(torch.randn(3, 40 * model.config.hop) * 0.3)
    with torch.enable_grad():
        whole, _ = model.spectral_forward(spec)
    for module in model.modules():
        if isinstance(module, BandSplit | BandTransformer | TemporalConvBlock | BandMerge):
            module.chunk = 4
    with torch.no_grad():
        chunked, _ = model.spectral_forward(spec)
        if causal:
            first, state = model.spectral_forward(spec[:, :13])
            rest, _ = model.spectral_forward(spec[:, 13:], state)
    torch.testing.assert_close(chunked, whole.detach(), atol=1e-5, rtol=0)
    if causal:
        torch.testing.assert_close(torch.cat([first, rest], 1), whole.detach(), atol=1e-5, rtol=0)


def test_training_pass_copies_no_activation_sized_tensor():
    """With gradients, the activations do not run in place: an in-place SiLU makes autograd save a copy of
    its input and copy the gradient back through the view (4 activation-sized copies per block, measured)."""
    from torch.profiler import ProfilerActivity, profile

    from apollo_restore.model.layers import BandTransformer, TemporalConvBlock

    x = torch.randn(1, 12, 6, 16, requires_grad=True)
    for block, wide in ((TemporalConvBlock(16, 3, causal=False), 4 * 16), (BandTransformer(16, 2, 6, 10000.0), 8 * 16)):
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            out = block(x)
            (out[0] if isinstance(out, tuple) else out).square().sum().backward()
        activation = [[1, 12, 6, wide], [12, 6, wide], [72, wide]]
        copies = [e for e in prof.events() if e.name in ("aten::copy_", "aten::clone", "aten::fill_")
                  and e.input_shapes and e.input_shapes[0] in activation
                  and not (e.cpu_parent and e.cpu_parent.name == "aten::addmm")]  # addmm starts from the bias
        assert not copies, f"{type(block).__name__}: {[(e.name, e.input_shapes[0]) for e in copies]}"
