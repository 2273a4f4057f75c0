"""The bundled default model and demo clip: the README's first command, and registry checksums."""

import json

import numpy as np
import pytest
import soundfile as sf

from apollo_restore import checkpoint
from apollo_restore.checkpoint import bundled_models, load_checkpoint, load_model, register_bundled_model, save_model
from apollo_restore.cli import main
from apollo_restore.errors import ApolloError
from conftest import tiny_model


def test_default_model_is_bundled_with_a_card_and_loads():
    models = bundled_models()
    assert "default" in models
    assert (models["default"] / "README.md").read_text().strip()
    model = load_model()  # default
    assert model.config.sample_rate == 44100 and not model.training


def test_demo_command_writes_restored_audio_and_spectrogram(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["restore", "--demo", "-q", "-o", "restored.wav", "--spectrogram", "restored.png"]) == 0
    audio, sr = sf.read(tmp_path / "restored.wav", always_2d=True)
    assert sr == 44100 and audio.shape[1] == 2 and audio.shape[0] > 5 * sr
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.1
    assert (tmp_path / "restored.png").read_bytes()[:4] == b"\x89PNG"


def test_registry_checksum_catches_a_corrupt_bundled_model(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "models_root", lambda: tmp_path)
    save_model(tiny_model(), tmp_path / "mine")
    register_bundled_model("mine", "a tiny test model")
    assert json.loads((tmp_path / "registry.json").read_text())["mine"]["summary"] == "a tiny test model"
    assert load_model("mine").config.feature_dim == 16
    weights = tmp_path / "mine" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ApolloError, match="corrupt"):
        load_model("mine")


def _band_db(audio: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[-1], 1 / sample_rate)
    return float(10 * np.log10(spectrum[..., (freqs >= low_hz) & (freqs < high_hz)].sum() + 1e-20))


@pytest.mark.parametrize("name", ["default", "causal"])
def test_bundled_models_fill_the_band_the_mp3_cut_and_keep_the_pass_band(name):
    """The demo is a 32 kbit/s MP3 (cut at ~5.6 kHz): the shipped models write 6-16 kHz, keep 0-5 kHz."""
    from apollo_restore.audio import read_audio
    from apollo_restore.cli.restore import demo_clip
    from apollo_restore.inference import restore

    model, gate = load_checkpoint(name)
    assert model.config.causal == (name == "causal")
    audio, sr = read_audio(demo_clip())
    audio = audio[:, : 4 * sr]
    restored = restore(audio, sr, model, gate=gate)
    assert restored.shape == audio.shape and restored.dtype == np.float32
    assert _band_db(restored, sr, 6500, 16000) > _band_db(audio, sr, 6500, 16000) + 10  # 10x the energy
    error = _band_db(restored - audio, sr, 0, 5000) - _band_db(audio, sr, 0, 5000)
    assert error < -40, f"pass band changed: error {error:.1f} dB"


@pytest.mark.parametrize("kind", ["dc", "sine"])
def test_bundled_default_adds_no_tone_where_there_is_no_codec_cut(kind):
    """DC or a pure 1 kHz tone through `restore()`: no codec cut, so the output is the input (these got a
    100 Hz comb at -33 dBFS before the gate learnt to ask for a pass band of music)."""
    from apollo_restore.inference import restore

    sr = 44100
    t = np.arange(2 * sr) / sr
    audio = (np.full_like(t, 0.25) if kind == "dc" else 0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    restored = restore(np.stack([audio, audio]), sr)
    assert np.abs(restored - audio).max() < 1e-4
