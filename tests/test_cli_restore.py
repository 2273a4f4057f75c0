"""`apollo restore` end to end on real files with a tiny model."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import lameenc
import numpy as np
import pytest
import soundfile as sf

from apollo_restore.cli import main


def _music(seconds: float, sr: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (220, 330, 440, 3000))
    audio = 0.1 * tones + 0.05 * rng.standard_normal(t.shape)
    return np.stack([audio * (0.8 + 0.1 * c) for c in range(channels)]).astype(np.float32)


def _write(path: Path, audio: np.ndarray, sr: int = 44100, subtype: str | None = None) -> Path:
    sf.write(path, audio.T, sr, subtype=subtype)
    return path


def _mp3(path: Path, audio: np.ndarray, sr: int = 44100) -> Path:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(128)
    encoder.set_in_sample_rate(sr)
    encoder.set_channels(audio.shape[0])
    encoder.set_quality(2)
    pcm = (np.clip(audio, -1, 1).T * 32767).astype(np.int16).tobytes()
    path.write_bytes(encoder.encode(pcm) + encoder.flush())
    return path


def _restore(*args: str) -> int:
    return main(["restore", "-q", *args])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("subtype,channels", [("PCM_U8", 1), ("PCM_16", 2), ("PCM_24", 2), ("PCM_32", 6),
                                              ("FLOAT", 1), ("DOUBLE", 2)])
def test_restores_every_sample_format_and_channel_count(tmp_path, tiny_checkpoint, subtype, channels):
    src = _write(tmp_path / "in.wav", _music(0.7, channels=channels), subtype=subtype)
    assert _restore(str(src), "-o", str(tmp_path / "out.wav"), "--checkpoint", str(tiny_checkpoint)) == 0
    info = sf.info(tmp_path / "out.wav")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.wav").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    expected = (channels, 44100, "FLOAT", sf.info(src).frames)
    assert (info.channels, info.samplerate, info.subtype, info.frames) == expected
    assert np.isfinite(sf.read(tmp_path / "out.wav")[0]).all()


def test_mp3_flac_ogg_inputs_and_odd_sample_rates(tmp_path, tiny_checkpoint):
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    _mp3(inputs / "a.mp3", _music(1.0))
    _write(inputs / "sub" / "b.flac", _music(0.5, sr=48000), sr=48000)
    _write(inputs / "sub" / "c.ogg", _music(0.5, sr=22050, channels=1), sr=22050)
    _write(inputs / "sub" / "d.wav", _music(0.3, sr=11025, channels=1), sr=11025)
    (inputs / "notes.txt").write_text("not audio, ignored by folder search")
    out = tmp_path / "out"
    assert _restore(str(inputs), "-o", str(out), "--format", "flac", "--checkpoint", str(tiny_checkpoint)) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac")) == [
        "a.flac", "sub/b.flac", "sub/c.flac", "sub/d.flac"]
    assert sf.info(out / "sub" / "b.flac").samplerate == 44100
    assert sf.info(out / "sub" / "b.flac").frames == round(0.5 * 44100)
    # --keep-sr writes at the input rate with the input's length
    assert _restore(str(inputs / "sub" / "b.flac"), "-o", str(tmp_path / "b48.wav"), "--keep-sr",
                    "--checkpoint", str(tiny_checkpoint)) == 0
    info = sf.info(tmp_path / "b48.wav")
    assert (info.samplerate, info.frames) == (48000, 24000)


def test_skip_existing_and_spectrogram(tmp_path, tiny_checkpoint, capsys):
    src = _write(tmp_path / "in.wav", _music(0.5))
    out = tmp_path / "out"
    out.mkdir()
    (out / "in.wav").write_bytes(b"keep me")
    assert _restore(str(src), "-o", str(out), "--skip-existing", "--checkpoint", str(tiny_checkpoint)) == 0
    assert (out / "in.wav").read_bytes() == b"keep me"
    assert "skipped" in capsys.readouterr().out
    png = tmp_path / "spec.png"
    assert _restore(str(src), "-o", str(out), "--spectrogram", str(png), "--checkpoint", str(tiny_checkpoint)) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sf.info(out / "in.wav").frames == sf.info(src).frames


def test_pcm16_output_clips_and_says_so(tmp_path, tiny_checkpoint, capsys):
    loud = np.clip(_music(0.5) * 8, -1, 1)
    src = _write(tmp_path / "loud.wav", loud)
    assert _restore(str(src), "-o", str(tmp_path / "o.wav"), "--subtype", "PCM_16",
                    "--checkpoint", str(tiny_checkpoint)) == 0
    assert sf.info(tmp_path / "o.wav").subtype == "PCM_16"
    assert "loud.wav ->" in capsys.readouterr().out


def test_silence_and_dc_work(tmp_path, tiny_checkpoint):
    _write(tmp_path / "silence.wav", np.zeros((2, 20000), np.float32))
    _write(tmp_path / "dc.wav", np.full((1, 20000), 0.5, np.float32))
    for name in ("silence", "dc"):
        assert _restore(str(tmp_path / f"{name}.wav"), "-o", str(tmp_path / f"{name}-out.wav"),
                        "--checkpoint", str(tiny_checkpoint)) == 0
        out, _ = sf.read(tmp_path / f"{name}-out.wav")
        assert np.isfinite(out).all()
    assert not sf.read(tmp_path / "silence-out.wav")[0].any()


def test_bad_inputs_fail_with_one_line_and_leave_outputs_alone(tmp_path, tiny_checkpoint, capsys):
    good = _write(tmp_path / "good.wav", _music(0.5))
    empty = _write(tmp_path / "empty.wav", np.zeros((2, 0), np.float32))
    text = tmp_path / "text.wav"
    text.write_text("hello, I am not audio")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])  # cut inside the header
    nan = np.full((2, 4000), 0.1, np.float32)
    nan[0, 100] = np.nan
    nan_file = _write(tmp_path / "nan.wav", nan, subtype="FLOAT")
    existing = tmp_path / "existing.wav"
    existing.write_bytes(b"precious")
    for bad in (tmp_path / "missing.wav", empty, text, truncated, nan_file):
        assert _restore(str(bad), "-o", str(existing), "--checkpoint", str(tiny_checkpoint)) == 1, bad
        assert "error" in _one_line_error(capsys)
        assert existing.read_bytes() == b"precious"
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]
    # unwritable destinations
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    assert _restore(str(good), "-o", str(blocker / "x.wav"), "--checkpoint", str(tiny_checkpoint)) == 1
    _one_line_error(capsys)
    assert _restore(str(good), "-o", str(tmp_path / "x.mp3"), "--checkpoint", str(tiny_checkpoint)) == 1
    _one_line_error(capsys)
    assert _restore(str(good), "-o", str(good), "--checkpoint", str(tiny_checkpoint)) == 1
    _one_line_error(capsys)
    assert _restore(str(good), "--checkpoint", str(tmp_path / "nope")) == 1
    _one_line_error(capsys)


def test_files_cut_mid_stream_restore_what_is_there(tmp_path, tiny_checkpoint):
    full_wav = _write(tmp_path / "full.wav", _music(1.0))
    full_mp3 = _mp3(tmp_path / "full.mp3", _music(1.0))
    for full in (full_wav, full_mp3):
        cut = tmp_path / f"cut{full.suffix}"
        data = full.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        assert _restore(str(cut), "-o", str(tmp_path / "out.wav"), "--checkpoint", str(tiny_checkpoint)) == 0
        assert 0.3 * 44100 < sf.info(tmp_path / "out.wav").frames < 0.7 * 44100


def test_batch_continues_past_a_bad_file(tmp_path, tiny_checkpoint, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write(inputs / "a.wav", _music(0.3))
    (inputs / "b.wav").write_text("broken")
    assert _restore(str(inputs), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint)) == 1
    assert (tmp_path / "out" / "a.wav").exists() and not (tmp_path / "out" / "b.wav").exists()
    err = capsys.readouterr().err
    assert "b.wav" in err and "1 of 2 files failed" in err


def test_console_entry_point_runs(tmp_path, tiny_checkpoint):
    src = _write(tmp_path / "in.wav", _music(0.3))
    result = subprocess.run([sys.executable, "-m", "apollo_restore", "restore", str(src), "-o",
                             str(tmp_path / "o.flac"), "--checkpoint", str(tiny_checkpoint), "-q"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "in.wav ->" in result.stdout and sf.info(tmp_path / "o.flac").subtype == "PCM_24"
    result = subprocess.run([sys.executable, "-m", "apollo_restore", "restore", str(tmp_path / "none.wav")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.count("\n") == 1


def test_replacing_an_output_keeps_its_permissions(tmp_path, tiny_checkpoint):
    src = _write(tmp_path / "in.wav", _music(0.3))
    out = tmp_path / "private.wav"
    out.write_bytes(b"old")
    out.chmod(0o600)
    assert _restore(str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint)) == 0
    assert out.stat().st_mode & 0o777 == 0o600 and sf.info(out).frames == sf.info(src).frames


def test_a_signal_while_the_output_is_opened_leaves_no_temporary(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    """The window CI once hit: SIGTERM after the output's temporary exists, before its writer owns it."""
    import soundfile

    from apollo_restore import audio
    from apollo_restore.cli import Terminated

    src = _write(tmp_path / "in.wav", _music(1.0))
    real_open = soundfile.SoundFile

    def interrupted_open(path, mode="r", *args, **kwargs):
        if mode == "w":
            raise Terminated(signal.SIGTERM)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(audio.sf, "SoundFile", interrupted_open)
    out = tmp_path / "out"
    out.mkdir()
    assert _restore(str(src), "-o", str(out / "x.wav"), "--checkpoint", str(tiny_checkpoint)) == 128 + signal.SIGTERM
    assert "SIGTERM" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []
