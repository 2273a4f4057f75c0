"""Optional dependencies: which extra of apollo-restore installs each optional import.

Subcommands import these inside ``run``; when one is missing, the CLI says which extra to install instead of
ending in ``ModuleNotFoundError`` (:func:`missing_extra`). ``tests/test_extras.py`` checks this table against
the extras in ``pyproject.toml``.
"""

from __future__ import annotations

import re

#: top-level import name -> (distribution on PyPI, extra that installs it)
OPTIONAL_IMPORTS: dict[str, tuple[str, str]] = {
    "lameenc": ("lameenc", "codecs"),
    "miniaudio": ("miniaudio", "codecs"),
    "music21": ("music21", "data"),
    "fluidsynth": ("pyfluidsynth", "data"),
    "scipy": ("scipy", "data"),
    "pyloudnorm": ("pyloudnorm", "data"),
    "pedalboard": ("pedalboard", "data"),
    "yaml": ("pyyaml", "train"),
    "tensorboard": ("tensorboard", "train"),
    "fast_bss_eval": ("fast-bss-eval", "eval"),
    "visqol": ("visqol-python", "eval"),
    "numba": ("numba", "eval"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
}


#: the module an ImportError names in its message (some libraries re-raise one without ``.name``)
_NO_MODULE = re.compile(r"No module named '([\w.]+)'|import of ([\w.]+) halted")


def _module_name(error: ImportError) -> str:
    if error.name:
        return error.name.split(".")[0]
    found = _NO_MODULE.search(str(error))
    return (found.group(1) or found.group(2)).split(".")[0] if found else ""


def missing_extra(error: BaseException) -> str | None:
    """For an ImportError of one of :data:`OPTIONAL_IMPORTS` (also one raised while handling it, as
    ``torch.utils.tensorboard`` does), a one-line message naming the extra to install; else None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ImportError) and (name := _module_name(seen)) in OPTIONAL_IMPORTS:
            distribution, extra = OPTIONAL_IMPORTS[name]
            return (f"this needs the optional package {distribution!r}, which is not installed: "
                    f"pip install 'apollo-restore[{extra}]'")
        seen = seen.__cause__ or seen.__context__
    return None
