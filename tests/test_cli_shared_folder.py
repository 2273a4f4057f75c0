"""Two real `apollo restore --skip-existing` processes sharing one folder (signals: see tests/bad_inputs.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

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
