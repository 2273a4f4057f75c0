"""Codec round trips: sample alignment, bandwidth per bitrate, the meaning of "24 kbps", the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from apollo_restore.audio import read_audio, write_audio
from apollo_restore.cli import main
from apollo_restore.degrade import (
    PAPER_BITRATES,
    Degradation,
    DegradeConfig,
    degrade,
    degrade_with_info,
    mp3_encode,
)
from apollo_restore.errors import ApolloError

SR = 44100


def lag_of(reference: np.ndarray, test: np.ndarray) -> int:
    """Lag (samples) of ``test`` relative to ``reference`` maximising their linear cross-correlation."""
    n = reference.size + test.size
    corr = np.fft.irfft(np.fft.rfft(test, n) * np.conj(np.fft.rfft(reference, n)), n)
    lag = int(np.argmax(corr))
    return lag if lag < n // 2 else lag - n


def lowpass_hz(clean: np.ndarray, coded: np.ndarray) -> float:
    """Highest frequency where the coded spectrum stays within 20 dB of the clean one (smoothed)."""
    kernel = np.ones(1024) / 1024
    power = [np.convolve(np.abs(np.fft.rfft(x)) ** 2, kernel, "same") for x in (clean, coded)]
    ratio = 10 * np.log10(power[1] / power[0] + 1e-20)
    return float(np.fft.rfftfreq(clean.size, 1 / SR)[np.nonzero(ratio > -20)[0].max()])


def click_train(seconds: float = 2.0) -> np.ndarray:
    audio = np.zeros((2, round(seconds * SR)), np.float32)
    audio[0, 3001::7919] = 0.9
    audio[1, 5003::6007] = -0.7
    return audio


def music_noise(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Pink-ish noise with a 4 Hz amplitude pattern, stereo: broadband like a dense mix."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    spectrum = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0))
    audio = np.fft.irfft(spectrum, n, axis=1) * (1.2 + np.sin(2 * np.pi * 4 * np.arange(n) / SR))
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


DEGRADATIONS = [Degradation("mp3", b) for b in PAPER_BITRATES] + [
    Degradation("mp3", None, 2), Degradation("mp3", None, 7), Degradation("aac", 32), Degradation("aac", 128),
    Degradation("opus", 96), Degradation("lowpass", None, None, 6000.0)]


@pytest.mark.parametrize("degradation", DEGRADATIONS, ids=lambda s: s.label)
def test_roundtrip_is_sample_aligned(degradation: Degradation) -> None:
    for signal in (click_train(), music_noise()):
        out = degrade_with_info(signal, SR, degradation)[0]
        assert out.shape == signal.shape and out.dtype == np.float32
        assert np.isfinite(out).all()
        for channel in range(2):
            assert lag_of(signal[channel], out[channel]) == 0, degradation.label
        # sample-exact: the residual is smallest at lag 0, not merely near it
        errors = [np.sum((np.roll(out[0], k)[2000:-2000] - signal[0, 2000:-2000]) ** 2) for k in (-1, 0, 1)]
        assert errors[1] < min(errors[0], errors[2])


def test_no_wrap_around() -> None:
    """Silence at the head and tail survives: a circular roll would move decoded audio there."""
    signal = music_noise(3.0)
    signal[:, : SR // 2] = 0.0
    signal[:, -SR // 2:] = 0.0
    out = degrade(signal, SR, "mp3", 64)
    assert np.abs(out[:, : SR // 2 - 2048]).max() < 1e-3
    assert np.abs(out[:, -SR // 2 + 2048:]).max() < 1e-3


def test_lowpass_grows_with_bitrate_and_matches_lame() -> None:
    signal = music_noise(3.0, seed=1)
    cutoffs = {b: lowpass_hz(signal[0], degrade(signal, SR, "mp3", b)[0]) for b in PAPER_BITRATES}
    expected = {24: (3.5e3, 4.8e3), 32: (4.9e3, 6.0e3), 48: (7.0e3, 8.3e3), 64: (10.3e3, 11.8e3),
                96: (14.6e3, 16.0e3), 128: (16.0e3, 17.5e3)}
    for bitrate, (low, high) in expected.items():
        assert low <= cutoffs[bitrate] <= high, (bitrate, cutoffs[bitrate])


def test_24_kbps_means_32_kbps_frames_with_24_kbps_coding() -> None:
    """MPEG-1 Layer III at 44.1 kHz has no 24 kbps frame: the stream is 32 kbps frames (same size as a
    32 kbps stream) but narrower than a real 32 kbps encode."""
    signal = music_noise(2.0, seed=2)
    streams = {b: mp3_encode(signal * 0.9, SR, b) for b in (24, 32)}
    header = streams[24][streams[24].find(b"\xff\xfb"):][:4]
    assert header[2] >> 4 == 1  # MPEG-1 Layer III bitrate index 1 = 32 kbit/s
    assert (header[2] >> 2) & 3 == 0  # sample-rate index 0 = 44.1 kHz
    assert len(streams[24]) == len(streams[32]) and streams[24] != streams[32]
    narrow = lowpass_hz(signal[0], degrade(signal, SR, "mp3", 24)[0])
    wide = lowpass_hz(signal[0], degrade(signal, SR, "mp3", 32)[0])
    assert narrow < wide - 600


def test_level_and_channels_preserved() -> None:
    loud = music_noise(1.0) * 6.0  # peak 3.0: must not clip inside the codec
    out = degrade(loud, SR, "mp3", 128)
    assert 2.5 < np.abs(out).max() < 3.6
    mono = degrade(loud[0] / 6.0, SR, "aac", 64)
    assert mono.shape == loud[0].shape
    assert lag_of(loud[0], mono) == 0


@pytest.mark.parametrize("codec", ["mp3", "aac", "opus"])
def test_tiny_inputs_keep_their_length(codec: str) -> None:
    for length in (1, 100, 1152):
        out = degrade(np.full((2, length), 0.1, np.float32), SR, codec, 64)
        assert out.shape == (2, length) and np.isfinite(out).all()


def test_draw_covers_options_and_rejects_bad_specs() -> None:
    config = DegradeConfig(bitrates=(32, 64), vbr_qualities=(4,))
    rng = np.random.default_rng(0)
    labels = {config.draw(rng).label for _ in range(60)}
    assert labels == {"mp3-32k", "mp3-64k", "mp3-V4"}
    for bad in (dict(codec="wma"), dict(bitrate=2), dict(codec="aac", bitrate=None, vbr_quality=3),
                dict(codec="lowpass", cutoff_hz=None)):
        with pytest.raises(ApolloError):
            Degradation(**bad)
    with pytest.raises(ApolloError):
        degrade(np.zeros((3, 1000), np.float32), SR, "mp3", 64)


def test_cli_degrade_writes_aligned_file(tmp_path, capsys) -> None:
    source = tmp_path / "in.wav"
    write_audio(source, music_noise(1.5), SR)
    out = tmp_path / "out" / "coded.flac"
    assert main(["degrade", str(source), str(out), "--codec", "mp3", "--bitrate", "32"]) == 0
    clean, _ = read_audio(source)
    coded, rate = read_audio(out)
    assert rate == SR and coded.shape == clean.shape
    assert lag_of(clean[0], coded[0]) == 0
    assert sf.info(str(out)).subtype == "PCM_24"


def test_cli_degrade_bad_input_is_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "not-audio.wav"
    bad.write_text("hello")
    out = tmp_path / "out.wav"
    assert main(["degrade", str(bad), str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("apollo degrade: error:") and "\n" not in error
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]
    assert main(["degrade", str(bad), str(out), "--codec", "lowpass"]) == 1
    assert "cutoff" in capsys.readouterr().err


def test_cli_degrade_folder_mirrors_and_skips(tmp_path, capsys) -> None:
    source = tmp_path / "songs"
    write_audio(source / "a.wav", music_noise(1.0, seed=3), SR)
    write_audio(source / "album" / "b.flac", music_noise(1.0, seed=4)[:1], SR)
    out = tmp_path / "coded"
    assert main(["degrade", str(source), str(out), "--bitrate", "64"]) == 0
    coded = out / "album" / "b.flac"
    assert (out / "a.flac").is_file() and coded.is_file()
    clean, _ = read_audio(source / "album" / "b.flac")
    assert lag_of(clean[0], read_audio(coded)[0][0]) == 0
    stamp = coded.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["degrade", str(source), str(out), "--bitrate", "64"]) == 0  # nothing left to do
    assert coded.stat().st_mtime_ns == stamp and capsys.readouterr().out == ""
    assert main(["degrade", str(tmp_path / "coded" / "album"), str(tmp_path / "x"), "--format", "wav"]) == 0
    assert sf.info(str(tmp_path / "x" / "b.wav")).subtype == "FLOAT"
    (tmp_path / "empty").mkdir()
    assert main(["degrade", str(tmp_path / "empty"), str(tmp_path / "y")]) == 1
    assert "no audio files" in capsys.readouterr().err


def test_cli_degrade_never_overwrites_its_input(tmp_path, capsys, monkeypatch) -> None:
    songs = tmp_path / "songs"
    source = songs / "in.flac"
    write_audio(source, music_noise(0.5), SR)
    (tmp_path / "link.flac").symlink_to(source)
    original = source.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in (source, "songs/../songs/in.flac", "./songs/in.flac", tmp_path / "link.flac"):
        assert main(["degrade", str(source), str(out)]) == 1, out
        error = capsys.readouterr().err
        assert "overwrite the input" in error and error.count("\n") == 1
    assert main(["degrade", "songs", "songs"]) == 1  # a folder mapped onto itself: in.flac -> in.flac
    assert "overwrite the input" in capsys.readouterr().err
    assert source.read_bytes() == original and sorted(p.name for p in songs.iterdir()) == ["in.flac"]
