import numpy as np
import pytest
import torch

from apollo_restore.errors import ApolloError
from apollo_restore.model import Apollo, ApolloConfig, gate
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
    with pytest.raises(ApolloError, match="unknown model config key"):
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


def test_fill_gate_keeps_the_pass_band_and_writes_the_band_above_it():
    """With fill_below_db the model may only write above each frame's pass band (here: above the 3 kHz tone);
    the pass band, its holes between the tones included, comes through from the input bit for bit."""
    sr, length = 44100, 22050
    t = torch.arange(length, dtype=torch.float64) / sr  # float32 phases would add a -85 dB noise floor
    tones = (sum(torch.sin(2 * torch.pi * f * t) for f in (220.0, 1000.0, 3000.0)) * 0.2).float()
    model = tiny_model(fill_below_db=60.0)
    with torch.no_grad():
        spec_in = model.stft(tones[None])
        spec_out, _ = model.spectral_forward(spec_in)
    top = int(3000 / 50)
    pass_band, cut_band = slice(0, top + 1), slice(top + 12, None)  # 3 kHz tone's window leakage: a few bins
    torch.testing.assert_close(spec_out[..., pass_band], spec_in[..., pass_band], atol=0, rtol=0)
    written = (spec_out[..., cut_band] - spec_in[..., cut_band]).abs()
    assert (written > 1e-6).float().mean() > 0.9  # an untrained non-residual head writes there
    with torch.no_grad():
        assert model(torch.zeros(1, 2, 8000)).abs().max() == 0  # silence stays silence
    with pytest.raises(ApolloError, match="fill_below_db"):
        tiny_config(fill_below_db=3.0)


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
        spec = model.stft(audio[0])
        spec[:, 20:30] = 0
        out, _ = model.spectral_forward(spec)
    assert out[:, 20:30].abs().max() == 0 and out[:, 40:].abs().max() > 0


def test_gate_writes_across_a_codec_cliff_but_not_on_a_fading_source():
    """Brick-wall at 8 kHz (an encoder's low-pass): the model writes above it, no louder than the band's top.
    A source that fades out by itself (-6 dB/kHz from 2 kHz, as band-limited material does): nothing written."""
    model = tiny_model(residual=True, fill_below_db=60.0)
    with torch.no_grad():
        for projection in model.merge.projections:
            projection.weight.normal_(0, 0.5)
    noise = np.random.default_rng(0).standard_normal((1, 44100))
    freqs = np.fft.rfftfreq(noise.shape[1], 1 / 44100)
    spectrum = np.fft.rfft(noise)
    cliff = torch.from_numpy(np.fft.irfft(spectrum * (freqs < 8000), n=44100).astype(np.float32))
    fade_db = -6 * np.clip(freqs - 2000, 0, None) / 1000
    fade = torch.from_numpy(np.fft.irfft(spectrum * 10 ** (fade_db / 20), n=44100).astype(np.float32))
    with torch.no_grad():
        cut, faded = model(cliff[None]), model(fade[None])
    torch.testing.assert_close(faded[0], fade, atol=1e-5, rtol=0)

    def band(x: torch.Tensor, low: float, high: float) -> float:
        power = torch.fft.rfft(x[0].double()).abs().square()
        return float(power[..., (freqs >= low) & (freqs < high)].mean())

    above, top = band(cut[0], 8500, 20000), band(cliff[None], 6000, 8000)
    assert above > 1e-4 * top  # written: at most 40 dB under the band's top
    assert above <= 1.01 * top  # capped at the level of the pass band's top


@pytest.mark.parametrize(("bitrate", "writes", "cut_khz"), [(32, True, (5.0, 6.0)), (128, False, (9.5, 11.0))])
def test_gate_tells_an_encoders_low_pass_from_a_source_that_rolls_off(bitrate, writes, cut_khz):
    """A source band-limited by itself (here: -10 dB/kHz above 5 kHz, as a sampled instrument's band limit)
    through a real 128 kbit/s MP3 (low-pass ~17 kHz): 60 dB under its peak it ends near 10 kHz, but 80 dB under
    it goes on well above, so the model writes nothing. At 32 kbit/s the encoder's own low-pass (~5.5 kHz) is
    the sharp edge and the model writes above it."""
    from apollo_restore.degrade import degrade

    sr = 44100
    rng = np.random.default_rng(3)
    spectrum = np.fft.rfft(rng.standard_normal((2, 3 * sr)))
    freqs = np.fft.rfftfreq(3 * sr, 1 / sr)
    roll_off_db = -10 * np.clip(freqs - 5000, 0, None) / 1000
    source = np.fft.irfft(spectrum * 10 ** (np.maximum(roll_off_db, -110) / 20), n=3 * sr)
    source = (0.3 * source / np.abs(source).max()).astype(np.float32)
    coded = torch.from_numpy(degrade(source, sr, "mp3", bitrate))
    model = tiny_model(residual=True, fill_below_db=60.0)
    with torch.no_grad():
        spec = model.stft(coded)
    cutoff, weight = gate.estimate_cut(spec.reshape(1, -1, spec.shape[-1]), 60.0)
    assert (float(weight) == 1.0) if writes else (float(weight) == 0.0)
    assert cut_khz[0] <= int(cutoff) * 0.05 <= cut_khz[1]  # 50 Hz bins
