"""Generator building blocks: synth oscillators, the formant singer, preset bandwidths, effect chains and the
mix-bus master (loudness, ceiling, stems that still sum to the song)."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from apollo_restore.data.generator.presets import PresetBand, measure_preset
from apollo_restore.data.generator.production import (
    BusFx,
    StemFx,
    integrated_lufs,
    master_gain,
    process_stem,
    saturate,
)
from apollo_restore.data.generator.singer import draw_singer, sing
from apollo_restore.data.generator.voices import SPLIT_FAMILIES, draw_patch, note_audio, render_synth
from apollo_restore.data.stats import edge_hz, share_above_db
from prerequisites import unavailable

SR = 44100
TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def _spectrum_db(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mono = audio.mean(axis=0)
    power = np.abs(np.fft.rfft(mono * np.hanning(mono.size))) ** 2
    return np.fft.rfftfreq(mono.size, 1 / SR), 10 * np.log10(power / power.max() + 1e-30)


def test_polyblep_saw_reaches_nyquist_with_little_aliasing() -> None:
    patch = draw_patch("saw_bass", np.random.default_rng(0))
    patch = type(patch)(**{**patch.__dict__, "voices": 1, "detune_cents": 0.0, "noise_mix": 0.0})
    audio = note_audio(patch, 83.0, 1.0, 127, np.random.default_rng(1))[:, 2000:46100].mean(axis=0)  # 987.8 Hz
    power = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SR)
    f0 = 440 * 2 ** (14 / 12)

    def harmonic_db(n: int) -> float:
        return 10 * np.log10(power[np.abs(freqs - n * f0) < 200].sum() / power[np.abs(freqs - f0) < 200].sum())

    assert harmonic_db(5) == pytest.approx(20 * np.log10(1 / 5), abs=1.5)  # a sawtooth's 1/n partials
    assert harmonic_db(21) > -40  # 20.7 kHz: still there (PolyBLEP droops ~7 dB this close to Nyquist)
    between = (np.abs((freqs + f0 / 2) % f0 - f0 / 2) > 250) & (freqs > 1500)
    assert 10 * np.log10(power[between].sum() / power.sum()) < -25  # aliases stay small


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_synth_family_sounds(split) -> None:
    rng = np.random.default_rng(2)
    notes = np.array([(0.2 * k, 0.3, 48 + 3 * k, 100) for k in range(8)])
    for family in SPLIT_FAMILIES[split]:
        audio = render_synth(draw_patch(family, rng), notes, 2.5, 2.0, rng)
        assert audio.shape == (2, round(2.5 * SR)) and audio.dtype == np.float32
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01, family
    assert not set(SPLIT_FAMILIES["train"]) & set(SPLIT_FAMILIES["test"])


def test_singer_sings_the_notes_with_breath_and_sibilance() -> None:
    rng = np.random.default_rng(3)
    notes = np.array([(0.6 + 0.5 * k, 0.45, 62 + 2 * (k % 4), 100) for k in range(8)])
    patch = draw_singer(64, rng)
    audio = sing(patch, notes, 5.5, np.random.default_rng(4))
    assert audio.shape == (2, round(5.5 * SR)) and np.allclose(audio[0], audio[1])
    assert edge_hz(audio, SR) > 16000 and share_above_db(audio, SR) > -70  # breath and sibilance: full-band
    # the first note's pitch comes out: the strongest partial below 1 kHz is its fundamental or a harmonic
    first = audio[:, round(0.75 * SR):round(1.0 * SR)]
    freqs, level = _spectrum_db(first)
    low = (freqs > 100) & (freqs < 1000)
    peak = freqs[low][np.argmax(level[low])]
    f0 = 440 * 2 ** ((62 - 69) / 12)
    assert min(abs(peak - f0 * n) for n in (1, 2, 3)) < 12
    # the breath intake before the phrase is heard (its start precedes the first note)
    assert np.abs(audio[0, : round(0.55 * SR)]).max() > 0.01 * np.abs(audio).max()
    again = sing(patch, notes, 5.5, np.random.default_rng(4))
    assert np.array_equal(audio, again)


def test_saturation_writes_harmonics_above_a_band_limited_source() -> None:
    t = np.arange(SR) / SR
    dull = np.stack([0.5 * np.sin(2 * np.pi * 2000 * t) + 0.3 * np.sin(2 * np.pi * 3100 * t)] * 2).astype(np.float32)
    before = share_above_db(dull, SR)
    after = saturate(dull, 18.0, 0.6)
    assert before < -100 and share_above_db(after, SR) > -60
    assert np.sqrt(np.mean(after**2)) == pytest.approx(np.sqrt(np.mean(dull**2)), rel=0.3)  # level-matched


def test_stem_chain_air_shelf_lifts_the_top() -> None:
    noise = np.cumsum(np.random.default_rng(5).standard_normal((2, SR)), axis=1)  # brown: falls 6 dB/octave
    noise = (0.5 * (noise - noise.mean(axis=1, keepdims=True)) / np.abs(noise).max()).astype(np.float32)
    lifted = process_stem(noise, StemFx(high_shelf_hz=9000.0, high_shelf_db=6.0), np.random.default_rng(0))
    assert share_above_db(lifted, SR) - share_above_db(noise, SR) == pytest.approx(6.0, abs=1.0)


def test_loudness_matches_pyloudnorm() -> None:
    x = np.random.default_rng(6).standard_normal((2, 7 * SR)) * np.linspace(0.01, 0.3, 7 * SR)
    assert integrated_lufs(x) == pytest.approx(pyloudnorm.Meter(SR).integrated_loudness(x.T), abs=1e-6)
    assert integrated_lufs(np.zeros((2, SR))) == float("-inf")


@pytest.mark.parametrize("target", [-20.0, -9.0])
def test_master_reaches_the_target_under_the_ceiling(target) -> None:
    rng = np.random.default_rng(7)
    t = np.arange(6 * SR) / SR
    beat = (np.mod(t, 0.5) < 0.05) * rng.standard_normal(t.size)  # drum-like bursts on a pad
    stems = [np.stack([beat, beat]) * 0.5, np.stack([np.sin(2 * np.pi * 220 * t)] * 2) * 0.1]
    mix = sum(stems)
    fx = BusFx(target_lufs=target, ceiling_dbfs=-1.0)
    gain, reached = master_gain(mix, fx)
    assert gain.shape == (mix.shape[1],) and reached == pytest.approx(target, abs=0.5)
    mastered = [s * gain for s in stems]
    assert np.abs(sum(mastered)).max() <= 10 ** (-1.0 / 20) + 1e-4  # the ceiling holds for the sum
    assert integrated_lufs(sum(mastered)) == pytest.approx(reached, abs=1e-6)


def test_preset_bandwidth_tells_full_band_from_band_limited() -> None:
    if ctypes.util.find_library("fluidsynth") is None or not TIMGM.is_file():
        unavailable("libfluidsynth or timgm6mb-soundfont missing (scripts/install-data-deps.sh)")
    from apollo_restore.data.generator.fluid import FluidRenderer

    renderer = FluidRenderer(TIMGM)
    piano, bright = measure_preset(renderer, 0), measure_preset(renderer, 123)  # piano; bird tweet
    renderer.close()
    assert not piano.full_band and piano.edge_hz < 12000
    assert bright.full_band and bright.edge_hz > 18000
    assert PresetBand(1, 17000.0, -55.0).full_band and not PresetBand(1, 17000.0, -65.0).full_band
