"""Files this program writes: its own temporaries, atomic replacement, and claims that let processes share work.

Temporaries are hidden files named ``.<hint>.apollo-tmp-<pid>-<random>``: no audio extension, so folder scans
(ours skip them explicitly with :func:`is_temporary`, other tools by their extension) never take one for input.
While its process lives, a temporary is ``flock``-ed by it. One left behind by a killed process (SIGKILL, power
loss) is *stale*: not locked, and its pid is not a live process or it is older than ``STALE_SECONDS``. The first
temporary this process makes in a folder removes the stale ones there, and only files matching this naming
(never a user's file). A crash between creation and lock cannot expose a live file: its pid is still alive.

Atomic writing: write a temporary beside the target, then rename it into place, so a reader (or a killed
process) never sees a half-written file and an existing file is replaced only once the new one is complete. A
new file gets the permissions a plain ``open(path, "w")`` would give (umask applied); a replaced file keeps the
permissions of the one it replaces.

Claims (:func:`claim`): a hidden ``.<name>.apollo-claim`` file beside an output, ``flock``-ed by the process that
works on it, so that several processes sharing one output folder each take different files. A claim's lock dies
with its process, so a killed worker's files are taken by the next one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from apollo_restore.errors import ApolloError

try:
    import fcntl
except ImportError:  # not POSIX: no locks; stale temporaries are then told by pid and age only
    fcntl = None

#: marks this program's temporaries and claims in file names
MARKER = "apollo"
#: a temporary whose pid is alive (maybe a reused pid) but which nobody has locked for this long is stale
STALE_SECONDS = 24 * 3600
_TEMP_NAME = re.compile(rf"^\..*\.{MARKER}-tmp-(?P<pid>\d+)-[a-z0-9]{{8}}$", re.DOTALL)
_CLAIM_NAME = re.compile(rf"^\..*\.{MARKER}-claim$", re.DOTALL)
#: temporaries of versions before 0.1.1: ``.<name>.<mkstemp 8>.part<suffix>``; skipped by scans, removed when stale
_LEGACY_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.part(?P<suffix>\.[A-Za-z0-9]+)?$", re.DOTALL)
#: bytes of a name hint kept in a temporary's name (a file name has at most 255)
_HINT_BYTES = 120

#: our temporaries -> the descriptor holding their lock (closed when published or discarded)
_locked: dict[Path, int] = {}
#: folders already cleaned of stale temporaries by this process
_cleaned: set[Path] = set()


def _lock(fd: int, blocking: bool = False) -> bool:
    """``flock`` ``fd`` exclusively; False if another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without locks
            return True
        raise
    return True


def _short(hint: str) -> str:
    hint = hint.replace(os.sep, "_")
    encoded = hint.encode("utf-8", "surrogateescape")[:_HINT_BYTES]
    return encoded.decode("utf-8", "ignore")


# -- temporaries ------------------------------------------------------------------------------------------------


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path``'s name is one of this program's temporaries or claims (or an older version's)."""
    name = Path(path).name
    if _TEMP_NAME.match(name) or _CLAIM_NAME.match(name):
        return True
    legacy = _LEGACY_TEMP_NAME.match(name)
    return bool(legacy) and legacy.group("name").endswith(legacy.group("suffix") or "")


def new_temporary(directory: str | os.PathLike | None = None, hint: str = "file") -> Path:
    """Create an empty temporary of this program in ``directory`` (default: the system's TMPDIR); it stays
    locked by this process until :func:`publish` or :func:`discard`. Its name has no audio extension: pass the
    format explicitly to writers that guess it from the name (``soundfile``'s ``format="WAV"``)."""
    directory = Path(directory if directory is not None else tempfile.gettempdir())
    clean_stale_temporaries(directory, once=True)
    prefix = f".{_short(hint)}.{MARKER}-tmp-{os.getpid()}-"
    for _ in range(100):
        path = directory / (prefix + secrets.token_hex(4))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError:
            continue
        except OSError as error:
            raise ApolloError(f"{directory}: cannot write here ({error.strerror})") from None
        _locked[path] = fd  # registered first, so that discard_all finds it whatever is interrupted next
        _lock(fd, blocking=True)  # a cleaner looking at it holds the lock for a moment
        return path
    raise ApolloError(f"{directory}: cannot create a temporary file")


def discard(tmp: str | os.PathLike) -> None:
    """Remove one of our temporaries (if it is still there) and drop its lock."""
    tmp = Path(tmp)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    _release(tmp)


def discard_all() -> list[Path]:
    """Remove every temporary this process still holds; returns them. The CLI calls it when a command ends, so
    that a signal landing between a temporary's creation and the ``try`` that owns it leaves nothing behind."""
    held = list(_locked)
    for tmp in held:
        discard(tmp)
    return held


def _release(tmp: Path) -> None:
    fd = _locked.pop(tmp, None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def temporary(directory: str | os.PathLike | None = None, hint: str = "file") -> Iterator[Path]:
    """``with temporary(hint="input.wav") as path:`` a new temporary (see :func:`new_temporary`), removed on exit
    (also on Ctrl-C and SIGTERM, which the CLI turns into an exception)."""
    path = new_temporary(directory, hint)
    try:
        yield path
    finally:
        discard(path)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except (OSError, OverflowError):
        return False
    return True


def _is_stale(path: Path) -> bool:
    """``path`` (a name this program uses) is a regular file no live process of ours is using."""
    name = path.name
    temp = _TEMP_NAME.match(name)
    legacy = None if temp else _LEGACY_TEMP_NAME.match(name)
    if not (temp or legacy or _CLAIM_NAME.match(name)) or path in _locked:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False  # gone, a symlink, or not ours to open
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not _lock(fd):  # not a regular file, or in use
            return False
        old = time.time() - info.st_mtime > STALE_SECONDS
        if temp:
            return not _pid_alive(int(temp.group("pid"))) or old
        return True if not legacy else old and legacy.group("name").endswith(legacy.group("suffix") or "")
    finally:
        os.close(fd)


def clean_stale_temporaries(directory: str | os.PathLike, once: bool = False) -> list[Path]:
    """Remove this program's stale temporaries and claims in ``directory`` (not recursive); returns them.

    ``once``: do nothing if this process already cleaned the folder.
    """
    directory = Path(directory)
    key = Path(os.path.abspath(directory))
    if once:
        if key in _cleaned:
            return []
        _cleaned.add(key)
    removed = []
    try:
        entries = [Path(entry.path) for entry in os.scandir(directory) if entry.name.startswith(".")]
    except OSError:
        return removed
    for path in entries:
        if _is_stale(path):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def missing_input(path: str | os.PathLike) -> ApolloError | None:
    """The error for an input path that cannot be opened at all (missing, broken symlink, symlink loop)."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return ApolloError(f"{path}: symlink loop (the link points back at itself)")
        if os.path.islink(path):
            return ApolloError(f"{path}: broken symlink (points to {os.readlink(path)}, which does not exist)")
        if error.errno == errno.ENOENT:
            return ApolloError(f"{path}: no such file or folder")
        return ApolloError(f"{path}: cannot open ({error.strerror})")
    return None


def find_files(folder: Path, extensions: Iterable[str]) -> list[Path]:
    """Files under ``folder`` (recursive, sorted) whose extension is one of ``extensions`` (lower case, with the
    dot); this program's temporaries and claims are never among them. Symlink loops are skipped."""
    extensions = tuple(extensions)
    found = []
    for path in folder.rglob("*"):
        if path.suffix.lower() in extensions and not is_temporary(path) and path.is_file():
            found.append(path)
    return sorted(found)


# -- atomic writing ---------------------------------------------------------------------------------------------


def temp_beside(path: Path) -> Path:
    """A new temporary in ``path``'s folder (same file system, so the final rename is atomic)."""
    return new_temporary(path.parent, path.name)


def publish(tmp: Path, path: Path) -> None:
    """Rename our temporary ``tmp`` to ``path``: with the permissions of the file it replaces, else the umask's
    defaults. On failure ``tmp`` is removed."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as error:
        discard(tmp)
        raise ApolloError(f"{path}: cannot write ({error.strerror})") from None
    _release(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(temporary_path)`` and move the result to ``path``; nothing is left behind on error."""
    path = Path(path)
    tmp = temp_beside(path)
    try:
        write(str(tmp))
    except BaseException:
        discard(tmp)
        raise
    publish(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, newline=""))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path spelled differently, a symlink to it, a hard link."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(os.path.realpath(a)) == os.path.abspath(os.path.realpath(b))


# -- claims -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def claim(path: str | os.PathLike) -> Iterator[bool]:
    """``with claim(out) as mine:`` ``mine`` is True when this process may produce ``out``: no other process
    holds its claim and ``out`` does not exist yet. The claim is held (and then removed) for the ``with`` body;
    produce (publish) ``out`` inside it, so a process that takes the claim next sees the file and skips it."""
    path = Path(path)
    claim_path = path.parent / f".{_short(path.name)}.{MARKER}-claim"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ApolloError(f"{path.parent}: cannot create output folder ({error.strerror})") from None
    fd = None
    while fd is None:
        try:
            fd = os.open(claim_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as error:
            raise ApolloError(f"{claim_path}: cannot create a claim file ({error.strerror})") from None
        if not _lock(fd):
            os.close(fd)
            yield False  # another process is working on it
            return
        try:  # the holder before us may have removed the file we locked: only the file at claim_path counts
            same = os.path.samestat(os.fstat(fd), os.stat(claim_path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            fd = None
    try:
        yield not path.exists()
    finally:
        with contextlib.suppress(OSError):
            claim_path.unlink()
        os.close(fd)
