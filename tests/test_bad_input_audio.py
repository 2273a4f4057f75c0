"""Bad input to reading, restoring and streaming: a one-line message and a non-zero exit, never non-finite audio,
never a hang; warnings where something usable is still there."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from apollo_restore.audio import read_audio
from apollo_restore.checkpoint import save_model
from apollo_restore.cli import main
from apollo_restore.errors import ApolloError
from conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def causal_checkpoint(tmp_path: Path) -> Path:
    return save_model(tiny_model(causal=True), tmp_path / "causal")


def _music(seconds: float = 1.0, rate: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)
    return np.stack([tone, 0.8 * tone]).astype(np.float32)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def _restore(src: Path, dst: Path, checkpoint: Path) -> int:
    return main(["restore", "-q", str(src), "-o", str(dst), "--checkpoint", str(checkpoint), "--device", "cpu"])


def test_subnormal_peak_restores_to_finite_silence(tmp_path, tiny_checkpoint, capsys):
    """Peak 4e-41: a gain of 1/peak overflows float32; such input is silence and comes out as zeros."""
    audio = _music() / np.abs(_music()).max() * np.float32(4e-41)
    sf.write(tmp_path / "tiny.wav", audio.T, 44100, subtype="FLOAT")
    assert _restore(tmp_path / "tiny.wav", tmp_path / "out.wav", tiny_checkpoint) == 0
    out, rate = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    assert rate == 44100 and out.shape == (audio.shape[1], 2)
    assert np.isfinite(out).all() and not out.any()


def test_non_finite_model_output_is_never_written(tmp_path, capsys):
    model = tiny_model()
    with __import__("torch").no_grad():
        next(model.parameters()).fill_(3e38)  # finite (an Inf weight is refused at load), but the output overflows
    checkpoint = save_model(model, tmp_path / "inf-model")
    sf.write(tmp_path / "in.wav", _music().T, 44100)
    (tmp_path / "out.wav").write_bytes(b"previous output")
    assert _restore(tmp_path / "in.wav", tmp_path / "out.wav", checkpoint) == 1
    assert "not finite" in _one_line(capsys)
    assert (tmp_path / "out.wav").read_bytes() == b"previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "inf-model", "out.wav"]


def test_stream_raw_samples_far_beyond_full_scale_stop_with_an_error(tmp_path, causal_checkpoint, capsys):
    raw = tmp_path / "loud.f32"
    raw.write_bytes((np.full((44100, 2), 1e30, "<f4")).tobytes())
    args = ["stream", str(raw), "--raw", "--channels", "2", "--rate", "44100", "--checkpoint", str(causal_checkpoint),
            "--device", "cpu", "-o", str(tmp_path / "out.wav")]
    assert main(args) == 1
    assert "not finite" in _one_line(capsys)
    assert not (tmp_path / "out.wav").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["causal", "loud.f32"]


def test_stream_raw_to_stdout_never_writes_non_finite_samples(tmp_path, causal_checkpoint):
    raw = np.concatenate([np.full((4410, 1), 0.1, "<f4"), np.full((44100, 1), 1e30, "<f4")])
    done = subprocess.run(
        [sys.executable, "-m", "apollo_restore", "stream", "-", "--raw", "--channels", "1", "--rate", "44100",
         "--checkpoint", str(causal_checkpoint), "--device", "cpu"],
        input=raw.tobytes(), capture_output=True, timeout=120)
    assert done.returncode == 1 and b"not finite" in done.stderr
    assert np.isfinite(np.frombuffer(done.stdout, "<f4")).all()


@pytest.mark.parametrize("command", ["restore", "stream"])
def test_fifo_input_is_refused_at_once(tmp_path, tiny_checkpoint, causal_checkpoint, command):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    checkpoint = causal_checkpoint if command == "stream" else tiny_checkpoint
    args = [command, str(fifo), "-o", str(tmp_path / "out.wav"), "--checkpoint", str(checkpoint)]
    done = subprocess.run([sys.executable, "-m", "apollo_restore", *args], capture_output=True, text=True,
                          timeout=60)  # opening a FIFO for reading without a writer would block forever
    assert done.returncode == 1 and "named pipe" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_symlink_loop_input_is_a_clear_error(tmp_path, causal_checkpoint, capsys):
    (tmp_path / "a.mp3").symlink_to(tmp_path / "b.mp3")
    (tmp_path / "b.mp3").symlink_to(tmp_path / "a.mp3")
    with pytest.raises(ApolloError, match="symlink loop"):
        read_audio(tmp_path / "a.mp3")
    args = ["stream", str(tmp_path / "a.mp3"), "-o", str(tmp_path / "out.wav"), "--checkpoint", str(causal_checkpoint)]
    assert main(args) == 1
    assert "symlink loop" in _one_line(capsys)


def test_text_named_mp3_says_it_is_not_audio(tmp_path, tiny_checkpoint, capfd):
    (tmp_path / "song.mp3").write_text("not music\n" * 100)
    assert _restore(tmp_path / "song.mp3", tmp_path / "out.wav", tiny_checkpoint) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "not an audio file" in err and "does not exist" not in err


def test_truncated_wav_restores_with_one_warning(tmp_path, tiny_checkpoint, capsys):
    sf.write(tmp_path / "full.wav", _music(2.0).T, 44100, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 4 * 30000])  # the header still says 2 s
    assert _restore(tmp_path / "cut.wav", tmp_path / "out.wav", tiny_checkpoint) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "read 30000 of the 88200 samples" in err
    assert sf.info(tmp_path / "out.wav").frames == 30000


@contextlib.contextmanager
def _small_disk(folder: Path, size: str = "300k"):
    """A tmpfs of ``size`` mounted at ``folder`` (root only; skipped where mounting is not allowed)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_full_output_disk_names_the_path(tmp_path, tiny_checkpoint, capsys):
    sf.write(tmp_path / "in.wav", _music(3.0).T, 44100)  # 1 MB of float32 output: more than the disk holds
    with _small_disk(tmp_path / "disk") as disk:
        assert _restore(tmp_path / "in.wav", disk / "out.wav", tiny_checkpoint) == 1
        err = _one_line(capsys)
        assert "disk full" in err and str(disk / "out.wav") in err
        assert list(disk.iterdir()) == []


def test_full_tmpdir_says_where_the_decoded_copy_goes(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    sf.write(tmp_path / "in.wav", _music(3.0).T, 44100)
    with _small_disk(tmp_path / "tmp") as tmp:
        monkeypatch.setenv("TMPDIR", str(tmp))
        monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
        assert _restore(tmp_path / "in.wav", tmp_path / "out.wav", tiny_checkpoint) == 1
        err = _one_line(capsys)
        assert "disk full" in err and "TMPDIR" in err and str(tmp) in err
        assert list(tmp.iterdir()) == [] and not (tmp_path / "out.wav").exists()


def test_enospc_is_reported_as_disk_full(tmp_path, monkeypatch):
    """The message without a mount: the OS error the write raises, simulated."""
    from apollo_restore.inference import DecodedCopy

    copy = DecodedCopy(tmp_path / "copy.f32", 2)

    class FullFile:
        def write(self, _):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            pass

    copy._file = FullFile()
    with pytest.raises(ApolloError, match="disk full"):
        copy.write(np.ones((2, 10), np.float32))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_decoded_copy_in_tmpdir_does_not_outlive_its_process(tmp_path, tiny_checkpoint, signum):
    """SIGTERM removes it at once; after SIGKILL the next run removes it (its pid is dead)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    sf.write(tmp_path / "long.wav", np.tile(_music(1.0), 60).T, 44100, subtype="PCM_16")
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "apollo_restore", "restore", "-q", "--checkpoint", str(tiny_checkpoint)]
    process = subprocess.Popen([*command, str(tmp_path / "long.wav"), "-o", str(tmp_path / "out.wav")], env=env,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not [p for p in tmp.iterdir() if p.stat().st_size > 0] and time.monotonic() < deadline:
        time.sleep(0.05)  # until the decoded copy is being written
    process.send_signal(signum)
    process.wait(timeout=60)
    copies = list(tmp.iterdir())
    if signum == signal.SIGTERM:
        assert process.returncode == 143 and copies == []
        return
    assert len(copies) == 1 and "apollo" in copies[0].name
    sf.write(tmp_path / "short.wav", _music(0.5).T, 44100)
    done = subprocess.run([*command, str(tmp_path / "short.wav"), "-o", str(tmp_path / "short-out.wav")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(tmp.iterdir()) == []
    assert not list(tmp_path.glob("*.apollo-tmp-*"))  # nor beside the output
