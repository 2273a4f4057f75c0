"""Atomic file writing: write beside the target under a temporary name, then rename into place.

A reader (or a killed process) never sees a half-written file, and an existing file is replaced only once the
new one is complete. Files get the permissions a plain ``open(path, "w")`` would give (umask applied).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from apollo_restore.errors import ApolloError


def temp_beside(path: Path) -> Path:
    """A new empty temporary file in ``path``'s folder (same filesystem, so the final rename is atomic)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
    except OSError as error:
        raise ApolloError(f"{path}: cannot write here ({error.strerror})") from None
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, path: Path) -> None:
    """Give ``tmp`` default permissions and rename it to ``path``; on failure remove it."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise ApolloError(f"{path}: cannot write ({error.strerror})") from None


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(temporary_path)`` and move the result to ``path``; nothing is left behind on error."""
    path = Path(path)
    tmp = temp_beside(path)
    try:
        write(str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    publish(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, newline=""))
