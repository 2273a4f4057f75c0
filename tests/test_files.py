"""This program's temporaries (naming, recognising, stale clean-up), atomic replacement and claims, with real
processes holding and losing them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apollo_restore.files import (
    atomic_write_text,
    claim,
    clean_stale_temporaries,
    discard,
    find_files,
    is_temporary,
    new_temporary,
    publish,
    temp_beside,
    temporary,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")
#: a child that makes one temporary in argv[1], prints its path and sleeps (to be killed)
_HOLDER = (
    "import sys, time; from apollo_restore.files import new_temporary; "
    "print(new_temporary(sys.argv[1], 'song.wav'), flush=True); time.sleep(600)"
)


def _holder(folder: Path) -> tuple[subprocess.Popen, Path]:
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": SRC})
    return child, Path(child.stdout.readline().strip())


def test_temporaries_are_hidden_marked_and_skipped_by_folder_scans(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    tmp = temp_beside(tmp_path / "out.wav")
    assert tmp.name.startswith(".out.wav.apollo-tmp-") and tmp.suffix not in (".wav", ".flac")
    legacy = tmp_path / ".b.wav.k2j_x8q0.part.wav"  # what versions before this one left behind
    legacy.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.flac").write_bytes(b"x")
    (tmp_path / "sub" / "loop.wav").symlink_to("loop.wav")
    (tmp_path / "sub" / "up").symlink_to("..")  # a folder cycle
    assert is_temporary(tmp) and is_temporary(legacy)
    for user_file in ("a.wav", ".hidden.wav", "x.part.wav", ".x.apollo-tmp-12.wav", ".notes.apollo"):
        assert not is_temporary(tmp_path / user_file), user_file
    assert find_files(tmp_path, (".wav", ".flac")) == [tmp_path / "a.wav", tmp_path / "sub" / "c.flac"]
    discard(tmp)
    assert not tmp.exists()


def test_stale_temporaries_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    live, live_tmp = _holder(tmp_path)
    dead, dead_tmp = _holder(tmp_path)
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    try:
        assert live_tmp.exists() and dead_tmp.exists()
        alive_unlocked = tmp_path / f".x.wav.apollo-tmp-{os.getppid()}-0a1b2c3d"  # a live pid, not locked: recent
        old_unlocked = tmp_path / f".y.wav.apollo-tmp-{os.getppid()}-0a1b2c3e"  # ... and a day old: stale
        legacy_old, legacy_new = tmp_path / ".a.wav.abcdefgh.part.wav", tmp_path / ".b.wav.abcdefgh.part.wav"
        users = [tmp_path / name for name in ("song.wav", ".song.wav", ".z.wav.apollo-tmp-x-0a1b2c3d",
                                              "a.apollo-tmp-999999-0a1b2c3d")]
        for path in (alive_unlocked, old_unlocked, legacy_old, legacy_new, *users):
            path.write_bytes(b"x")
        day_ago = time.time() - 2 * 24 * 3600
        for path in (old_unlocked, legacy_old, *users):
            os.utime(path, (day_ago, day_ago))
        (tmp_path / ".link.wav.apollo-tmp-999999-0a1b2c3d").symlink_to(users[0])
        removed = clean_stale_temporaries(tmp_path)
        assert sorted(removed) == sorted([dead_tmp, old_unlocked, legacy_old])
        for kept in (live_tmp, alive_unlocked, legacy_new, *users, tmp_path / ".link.wav.apollo-tmp-999999-0a1b2c3d"):
            assert os.path.lexists(kept), kept
    finally:
        live.kill()
        live.wait()
    # the first temporary this process makes in a folder cleans it: the holder's is stale now
    with temporary(tmp_path, "next") as path:
        assert path.exists() and not live_tmp.exists()
    assert not path.exists()


def test_replacing_a_file_keeps_its_permissions_and_a_new_file_gets_the_umask_default(tmp_path):
    kept = tmp_path / "private.txt"
    kept.write_text("old")
    kept.chmod(0o600)
    atomic_write_text(kept, "new")
    assert kept.read_text() == "new" and kept.stat().st_mode & 0o777 == 0o600
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "fresh.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o777 == 0o644
    tmp = new_temporary(tmp_path, "z")
    publish(tmp, tmp_path / "z")
    assert not [p for p in tmp_path.iterdir() if is_temporary(p)]


def test_a_claim_is_exclusive_released_on_exit_and_not_taken_for_existing_files(tmp_path):
    out = tmp_path / "out" / "a.wav"
    with claim(out) as mine:
        assert mine
        with claim(out) as other:  # a second claimant (flock: per open file, even in one process)
            assert not other
        out.write_bytes(b"done")
    assert not [p for p in out.parent.iterdir() if is_temporary(p)]  # the claim file is gone
    with claim(out) as mine:
        assert not mine  # exists now


def test_a_killed_claimant_does_not_block_the_next(tmp_path):
    out = tmp_path / "a.wav"
    code = ("import sys, time; from apollo_restore.files import claim\n"
            "with claim(sys.argv[1]) as mine:\n    print(mine, flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": SRC})
    assert child.stdout.readline().strip() == "True"
    with claim(out) as mine:
        assert not mine
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert [p for p in tmp_path.iterdir() if is_temporary(p)]  # its claim file is left ...
    with claim(out) as mine:
        assert mine  # ... but not locked


@pytest.mark.parametrize("hint", ["x" * 300, "a/b", "ünïcødé" * 40])
def test_long_or_odd_hints_still_give_valid_names(tmp_path, hint):
    with temporary(tmp_path, hint) as path:
        assert path.exists() and len(path.name.encode()) < 255 and is_temporary(path)
