"""The input gate outside the generator: each rule, its absence, legacy checkpoints, signals with no codec cut."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from apollo_restore.checkpoint import load_checkpoint, save_model
from apollo_restore.errors import ApolloError
from apollo_restore.gate import Gate, GateConfig
from conftest import tiny_model

SR = 44100
pytestmark = pytest.mark.usefixtures("single_thread")


def writing_model(residual: bool = True):
    """A tiny model whose untrained head writes everywhere (random, not zero, output projections)."""
    model = tiny_model(residual=residual)
    with torch.no_grad():
        for projection in model.merge.projections:
            projection.weight.normal_(0, 0.5)
    return model


def low_passed_noise(cut_hz: float, seconds: float = 1.0, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """``[channels, samples]`` white noise with nothing above ``cut_hz`` (an encoder's brick-wall low-pass)."""
    noise = np.random.default_rng(seed).standard_normal((channels, round(seconds * SR)))
    freqs = np.fft.rfftfreq(noise.shape[1], 1 / SR)
    cut = np.fft.irfft(np.fft.rfft(noise) * (freqs < cut_hz), n=noise.shape[1])
    return torch.from_numpy((0.3 * cut / np.abs(cut).max()).astype(np.float32))


def band_power(x: torch.Tensor, low: float, high: float) -> float:
    power = torch.fft.rfft(x.double()).abs().square()
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    return float(power[..., (freqs >= low) & (freqs < high)].mean())


def run(model, audio: torch.Tensor, config: GateConfig | None) -> torch.Tensor:
    """``[channels, samples]`` through the model, with the gate of ``config`` (None: no gate)."""
    post = None if config is None else Gate(config, model.config).bind(channels=audio.shape[0])
    with torch.no_grad():
        return model(audio[None], post)[0]


def test_pass_band_passes_bit_for_bit_and_the_band_above_is_written():
    model = writing_model(residual=False)
    audio = low_passed_noise(3000)
    gate = Gate(GateConfig(), model.config)
    with torch.no_grad():
        spec_in = model.framing.stft(audio)
        spec_out = gate(spec_in, model.spectral_forward(spec_in)[0], gate.estimate(spec_in))
    top = int(gate.estimate(spec_in)[0])
    assert 2800 <= top * 50 <= 3400  # the window leaks a few bins past the brick wall
    torch.testing.assert_close(spec_out[..., : top + 1], spec_in[..., : top + 1], atol=0, rtol=0)
    written = (spec_out[..., top + 3 :] - spec_in[..., top + 3 :]).abs()
    assert (written > 1e-6).float().mean() > 0.9
    with torch.no_grad():
        assert run(model, torch.zeros(2, 8000), GateConfig()).abs().max() == 0  # silence stays silence
    open_pass_band = GateConfig(keep_pass_band=False)  # the rule off: the model writes the pass band too
    assert band_power(run(model, audio, open_pass_band) - audio, 500, 2500) > 1e-3 * band_power(audio, 500, 2500)


def test_writes_across_a_codec_cliff_capped_but_not_on_a_fading_source():
    """Brick-wall at 8 kHz: the model writes above it, no louder than the band's top (level cap). A source that
    fades by itself (-6 dB/kHz from 2 kHz): nothing written, unless require_cut or require_cliff is off."""
    model = writing_model()
    cliff = low_passed_noise(8000)
    noise = np.random.default_rng(0).standard_normal((1, SR))
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    fade_db = -6 * np.clip(freqs - 2000, 0, None) / 1000
    fade = torch.from_numpy(np.fft.irfft(np.fft.rfft(noise) * 10 ** (fade_db / 20), n=SR).astype(np.float32))
    torch.testing.assert_close(run(model, fade, GateConfig()), fade, atol=1e-5, rtol=0)
    assert (run(model, fade, GateConfig(require_cut=False)) - fade).abs().max() > 1e-3
    assert (run(model, fade, GateConfig(require_cliff=False)) - fade).abs().max() > 1e-3  # a full pass band
    restored = run(model, cliff, GateConfig())
    above, top = band_power(restored, 8500, 20000), band_power(cliff, 6000, 8000)
    assert 1e-4 * top < above <= 1.01 * top  # written, at most the level of the pass band's top
    uncapped = run(model, cliff, GateConfig(level_cap=False))
    assert band_power(uncapped, 8500, 20000) > 1.5 * above


@pytest.mark.parametrize("kind", ["dc", "sine-1k", "sine-6k", "sine-12k"])
def test_no_codec_cut_means_nothing_is_written(kind):
    """DC or a pure tone ends in a 'cliff' but holds no pass band of music: no codec cut, so the output is the
    input (the shipped models used to add a 100 Hz comb here), with or without the cliff rule. Without
    require_cut they write."""
    t = torch.arange(SR, dtype=torch.float64) / SR
    signals = {
        "dc": torch.full((SR,), 0.5, dtype=torch.float64),
        "sine-1k": 0.5 * torch.sin(2 * torch.pi * 1000 * t),
        "sine-6k": 0.5 * torch.sin(2 * torch.pi * 6000 * t),
        "sine-12k": 0.5 * torch.sin(2 * torch.pi * 12000 * t),
    }
    audio = signals[kind].float()[None]
    model = writing_model()
    torch.testing.assert_close(run(model, audio, GateConfig()), audio, atol=1e-5, rtol=0)
    torch.testing.assert_close(run(model, audio, GateConfig(require_cliff=False)), audio, atol=1e-5, rtol=0)
    assert (run(model, audio, GateConfig(require_cut=False)) - audio).abs().max() > 1e-3


@pytest.mark.parametrize(("bitrate", "writes", "cut_khz"), [(32, True, (5.0, 6.0)), (128, False, (9.5, 11.0))])
def test_tells_an_encoders_low_pass_from_a_source_that_rolls_off(bitrate, writes, cut_khz):
    """A source band-limited by itself (-10 dB/kHz above 5 kHz, as a sampled instrument's band limit) through a
    real 128 kbit/s MP3 (low-pass ~17 kHz): 60 dB under its peak it ends near 10 kHz, but 80 dB under it goes on
    well above, so nothing is written. At 32 kbit/s the encoder's own low-pass (~5.5 kHz) is the sharp edge."""
    from apollo_restore.degrade import degrade

    rng = np.random.default_rng(3)
    spectrum = np.fft.rfft(rng.standard_normal((2, 3 * SR)))
    freqs = np.fft.rfftfreq(3 * SR, 1 / SR)
    roll_off_db = -10 * np.clip(freqs - 5000, 0, None) / 1000
    source = np.fft.irfft(spectrum * 10 ** (np.maximum(roll_off_db, -110) / 20), n=3 * SR)
    source = (0.3 * source / np.abs(source).max()).astype(np.float32)
    coded = torch.from_numpy(degrade(source, SR, "mp3", bitrate))
    model = tiny_model()
    with torch.no_grad():
        spec = model.framing.stft(coded)
    cutoff, weight = Gate(GateConfig(), model.config).estimate(spec, channels=2)
    assert (weight == 1.0).all() if writes else (weight == 0.0).all()
    assert cut_khz[0] <= int(cutoff[0]) * 0.05 <= cut_khz[1]  # 50 Hz bins
    same_cut, any_cut = Gate(GateConfig(require_cliff=False), model.config).estimate(spec, channels=2)
    assert torch.equal(same_cut, cutoff) and (any_cut == 1.0).all()  # without the cliff rule: written


def test_checkpoints_carry_their_gate_and_legacy_ones_load_with_every_rule(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "plain")
    assert load_checkpoint(tmp_path / "plain")[1] is None
    save_model(model, tmp_path / "gated", gate=GateConfig(below_db=50.0, level_cap=False))
    _, gate = load_checkpoint(tmp_path / "gated")
    assert gate.config == GateConfig(below_db=50.0, level_cap=False)
    # the layout written before the gate left the generator: model.fill_below_db in config.json and metadata
    legacy = tmp_path / "legacy"
    save_model(model, legacy)
    config = json.loads((legacy / "config.json").read_text())
    config["model"]["fill_below_db"] = 60.0
    (legacy / "config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file

    save_file(load_file(legacy / "model.safetensors"), legacy / "model.safetensors",
              metadata={"config": json.dumps(config)})
    _, gate = load_checkpoint(legacy)
    assert gate.config == GateConfig(below_db=60.0)
    for bundled in ("default", "causal"):  # the models shipped before the move keep their gate
        assert load_checkpoint(bundled)[1] is not None
    with pytest.raises(ApolloError, match="gate"):
        GateConfig.from_dict({"below_db": 60.0, "cap": True})
    with pytest.raises(ApolloError, match="below_db"):
        GateConfig(below_db=3.0)


@pytest.mark.parametrize("config", [GateConfig(), GateConfig(level_cap=False), GateConfig(keep_pass_band=False)])
def test_gradients_through_the_gate_are_finite(config):
    """Training backpropagates through the gate: every rule has finite gradients (the level cap's 'no cap' below
    the cut-off was an infinite cap, whose gradient 0 * inf made the weights NaN after one step)."""
    model = writing_model()
    audio = low_passed_noise(8000)[None]
    gate = Gate(config, model.config)
    model(audio, gate.bind()).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_fill_holes_writes_the_bands_a_codec_dropped_and_keeps_what_it_kept():
    """A codec-like input: brick-wall at 8 kHz and, in every other frame, a dropped band at 4-5 kHz. With
    fill_holes the model writes into those holes (and above 8 kHz) while every kept bin passes bit for bit."""
    model = writing_model(residual=False)
    audio = low_passed_noise(8000, seed=4)
    gate = Gate(GateConfig(fill_holes=True), model.config)
    with torch.no_grad():
        spec_in = model.framing.stft(audio)
        spec_in[:, ::2, 80:100] = 0  # 4-5 kHz gone in every other frame
        spec_out = gate(spec_in, model.spectral_forward(spec_in)[0], gate.estimate(spec_in))
    hole = torch.zeros_like(spec_in.real, dtype=torch.bool)
    hole[:, ::2, 80:100] = True
    assert int(gate.estimate(spec_in)[0]) * 50 > 7500
    power = spec_in.abs().square()
    present = power >= power.amax(dim=-1, keepdim=True) * 1e-6  # within 60 dB of the frame's peak
    kept = present & (torch.arange(spec_in.shape[-1]) < 7800 // 50)  # below the brick wall's window leakage
    torch.testing.assert_close(spec_out[kept], spec_in[kept], atol=0, rtol=0)
    assert (spec_out[hole].abs() > 1e-6).float().mean() > 0.9
    keep_holes = Gate(GateConfig(), model.config)  # fill_holes off: the holes stay empty
    assert keep_holes(spec_in, spec_out, keep_holes.estimate(spec_in))[hole].abs().max() == 0
