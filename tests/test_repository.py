"""The tracked tree itself: no absolute path of a development machine in any tracked text file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: where this project's development machine keeps its checkouts, data and runs (spelt so that this file,
#: which is checked like every other, does not contain it)
DEVELOPMENT_ROOT = "/" + "work" + "/"


def tracked_files() -> list[Path]:
    """Every file git tracks in this checkout (a skip outside a git checkout, a failure under CI)."""
    try:
        listing = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"cannot list the tracked files: {error}")
        pytest.skip(f"not a git checkout: {error}")
    return [REPO / name for name in listing.stdout.decode().split("\0") if name]


def _text(path: Path) -> str | None:
    """The file's text, or None for binary files (a NUL byte or not UTF-8) and files gone from the tree."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # deleted in the working tree, not yet committed
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_tracked_file_names_a_development_machines_path():
    hits = []
    files = tracked_files()
    for path in files:
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if DEVELOPMENT_ROOT in line:
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert len(files) > 100  # the listing did see the tree
    assert not hits, (f"{len(hits)} line(s) name {DEVELOPMENT_ROOT}: write $APOLLO_DATA/..., RUN or a relative "
                      "path instead:\n" + "\n".join(hits[:20]))
