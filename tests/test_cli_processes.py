"""Real `apollo restore` processes: stopped by SIGTERM, killed by SIGKILL, and two workers sharing one folder."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from apollo_restore.files import is_temporary

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _noise(path: Path, seconds: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal((round(seconds * 44100), 2))).astype(np.float32), 44100)
    return path


def _apollo(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path / "tmpdir")}
    (tmp_path / "tmpdir").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "apollo_restore", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temporary(p)]


def _wait_for_temporary(folder: Path, process: subprocess.Popen) -> Path:
    """Block until ``process`` has a temporary output in ``folder`` (it is then writing restored blocks)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        found = [p for p in _temporaries(folder) if "apollo-tmp" in p.name]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no temporary appeared (exit {process.poll()}): {process.communicate()}")


def test_sigterm_stops_cleanly_and_leaves_nothing(tmp_path, tiny_checkpoint):
    music = tmp_path / "music"
    music.mkdir()
    src = _noise(music / "long.wav", 30)
    out = music / "restored.wav"
    out.write_bytes(b"precious")
    process = _apollo(tmp_path, "restore", str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "-q",
                      "--block-seconds", "2")
    _wait_for_temporary(music, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert stderr.count("\n") == 1 and "SIGTERM" in stderr and "Traceback" not in stderr, stderr
    assert out.read_bytes() == b"precious"
    assert not _temporaries(music) and not list((tmp_path / "tmpdir").iterdir())


def test_after_sigkill_the_stale_temporary_is_never_input_and_is_cleaned(tmp_path, tiny_checkpoint):
    music, elsewhere = tmp_path / "music", tmp_path / "elsewhere"
    music.mkdir()
    elsewhere.mkdir()
    _noise(music / "a.wav", 0.5)
    src = _noise(elsewhere / "long.wav", 30, seed=1)
    process = _apollo(tmp_path, "restore", str(src), "-o", str(music / "long-restored.wav"),
                      "--checkpoint", str(tiny_checkpoint), "-q", "--block-seconds", "2")
    stale = _wait_for_temporary(music, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert stale.exists()  # SIGKILL cannot be handled: the partial output stays behind, hidden and marked
    again = _apollo(tmp_path, "restore", str(music), "-o", str(tmp_path / "out"), "--checkpoint",
                    str(tiny_checkpoint), "-q")
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.wav"]  # not the stale one
    # the next run that writes into the folder removes it (its process is gone); a live one is never touched
    write_here = _apollo(tmp_path, "restore", str(music / "a.wav"), "-o", str(music / "a-restored.wav"),
                         "--checkpoint", str(tiny_checkpoint), "-q")
    assert write_here.wait(timeout=300) == 0
    assert not stale.exists() and not _temporaries(music)


def test_two_workers_share_a_folder_and_restore_each_file_once(tmp_path, tiny_checkpoint):
    music = tmp_path / "music"
    music.mkdir()
    names = [f"song{i:02d}.wav" for i in range(20)]
    for i, name in enumerate(names):
        _noise(music / name, 2.0, seed=i)
    out = tmp_path / "restored"
    args = ("restore", str(music), "-o", str(out), "--skip-existing", "--checkpoint", str(tiny_checkpoint), "-q")
    workers = [_apollo(tmp_path, *args) for _ in range(2)]  # started together
    done = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr
        done.append({Path(line.split(" -> ")[0]).name for line in stdout.splitlines() if " -> " in line})
    print(f"two workers on {len(names)} files: worker 1 restored {len(done[0])}, worker 2 restored {len(done[1])}")
    assert not done[0] & done[1]  # nothing restored twice
    assert done[0] | done[1] == set(names)  # everything restored once
    assert sorted(p.name for p in out.iterdir()) == names  # no claim or temporary left
    assert all(sf.info(out / name).frames == 2 * 44100 for name in names)
