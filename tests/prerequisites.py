"""What tests need from outside the repository, and what happens without it: a skip, or a failure under
``CI=1`` (where everything is expected: a silent skip would hide a regression).

- ``../shared`` beside the clone: ``REFERENCE_FIXTURES``, checkpoints of the reference implementation in its
  three layouts and its output for a fixed input (data made by running the CC BY-SA reference code, so kept
  out of this MIT repository; the folder's README says how; ``APOLLO_REFERENCE_FIXTURES`` points elsewhere),
  and ``REAL_MUSIC``, the real lossless recordings of the evaluation set (evaluation only, never copied).
- Debian packages that ``make test`` installs: ``lame`` and ``ffmpeg`` (``codec_files.need``), and the
  SoundFonts and recorded kits of ``make data-deps`` (``scripts/install-data-deps.sh``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE_FIXTURES = Path(os.environ.get("APOLLO_REFERENCE_FIXTURES") or SHARED / "fixtures" / "apollo-reference")
REAL_MUSIC = SHARED / "real-music"


def unavailable(message: str) -> NoReturn:
    """Stop the test for want of ``message``'s prerequisite: a failure under ``CI=1``, a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require(folder: Path, variable: str | None = None) -> Path:
    """``folder``, or :func:`unavailable` when it is missing."""
    if not folder.is_dir():
        unavailable(f"{folder} not found" + (f" (set {variable})" if variable else ""))
    return folder
