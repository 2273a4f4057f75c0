"""The tracked tree itself: no absolute path of a development machine in any tracked text file, a module list
in docs/architecture.md that names every module, a core that imports no workflow, and one STFT framing."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

import module_list

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


def test_architecture_lists_every_module_with_what_it_owns():
    listed = {m.path: m for m in module_list.parse(module_list.DOC.read_text())}
    actual = {m.path: m for m in module_list.modules()}
    regenerate = "; run `python tests/module_list.py`"
    assert len(actual) > 50
    assert sorted(set(actual) - set(listed)) == [], "modules missing from docs/architecture.md" + regenerate
    assert sorted(set(listed) - set(actual)) == [], "docs/architecture.md lists modules that are gone" + regenerate
    for path, module in actual.items():
        assert module.owns, f"{path} has no docstring saying what it owns"
        assert listed[path].owns == module.owns, f"{path}: its docstring's summary changed" + regenerate
        assert module_list.within_drift(listed[path].lines, module.lines), \
            f"{path}: {module.lines} lines, listed as {listed[path].lines}" + regenerate


def test_module_list_is_generated_from_the_files(tmp_path):
    package = tmp_path / "src" / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""The package."""\n')
    (package / "b.py").write_text('"""Owns b: one | two,\nacross lines.\n\nDetails."""\n\nX = 1\n')
    (package / "sub" / "a.py").write_text("X = 1\n")
    listed = module_list.modules(package)
    assert listed == [module_list.Module("pkg/__init__.py", 1, "The package."),
                      module_list.Module("pkg/b.py", 6, "Owns b: one | two, across lines."),
                      module_list.Module("pkg/sub/a.py", 1, "")]
    doc = tmp_path / "architecture.md"
    doc.write_text(f"# Prose kept\n\n{module_list.MARKER}\n\n| stale | table |\n")
    module_list.write(doc, package)
    text = doc.read_text()
    assert text.startswith("# Prose kept\n") and "stale" not in text
    assert "| `pkg/b.py` | 6 | Owns b: one &#124; two, across lines. |" in text
    assert module_list.parse(text) == listed
    assert module_list.within_drift(100, 115) and not module_list.within_drift(100, 130)


#: the library's core: it serves every workflow and imports none of them (nor the command line)
CORE = ("errors", "files", "mapping", "stft", "precision", "extras", "decode", "audio", "degrade", "model",
        "gate", "checkpoint", "inference", "streaming", "export")
WORKFLOWS = ("data", "train", "evaluate", "cli")


def _imported_units(path: Path) -> set[str]:
    """The package units (``model``, ``train``, ...) a module imports, at module level or inside functions."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return {name.split(".")[1] for name in names if name.startswith("apollo_restore.")}


def test_the_core_imports_no_workflow():
    package = module_list.PACKAGE
    offending = []
    for unit in CORE:
        files = sorted((package / unit).rglob("*.py")) if (package / unit).is_dir() else [package / f"{unit}.py"]
        assert files and all(f.is_file() for f in files), unit
        for path in files:
            offending += [f"{path.relative_to(package)} imports apollo_restore.{name}"
                          for name in sorted(_imported_units(path) & set(WORKFLOWS))]
    assert not offending, "\n".join(offending)


def test_every_torch_stft_call_is_in_the_framing_module():
    calls = []
    for path in sorted(module_list.PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("stft", "istft")
                    and isinstance(node.value, ast.Name) and node.value.id == "torch"):
                calls.append(f"{path.relative_to(module_list.PACKAGE)}:{node.lineno} torch.{node.attr}")
    assert calls and all(call.startswith("stft.py:") for call in calls), calls
