"""A missing optional package names the extra that installs it, for every subcommand behind one."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from apollo_restore.cli import main
from apollo_restore.extras import OPTIONAL_IMPORTS, missing_extra

ROOT = Path(__file__).resolve().parents[1]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_the_table_matches_the_extras_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {extra: {_requirement_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    core = {_requirement_name(r) for r in project["dependencies"]}
    for module, (distribution, extra) in OPTIONAL_IMPORTS.items():
        assert distribution in extras[extra], (module, distribution, extra)
        assert distribution not in core, distribution
    listed = {distribution for distribution, _ in OPTIONAL_IMPORTS.values()}
    runtime = set().union(*(names for extra, names in extras.items() if extra not in ("dev", "all")))
    assert runtime <= listed, f"optional packages missing from extras.OPTIONAL_IMPORTS: {runtime - listed}"


@pytest.mark.parametrize("blocked,argv,extra", [
    ("lameenc", ["degrade", "{wav}", "{out}", "--codec", "mp3"], "codecs"),
    ("yaml", ["train", str(ROOT / "configs" / "cpu.yaml")], "train"),
    ("music21", ["make-data", "{out}"], "data"),
    ("fluidsynth", ["make-data", "{out}"], "data"),
])
def test_a_missing_optional_package_names_its_extra(tmp_path, capsys, monkeypatch, blocked, argv, extra):
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros((4410, 1), np.float32), 44100)
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` now raises ModuleNotFoundError
    argv = [a.format(wav=wav, out=tmp_path / "out.flac") for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    assert f"pip install 'apollo-restore[{extra}]'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_the_extra_is_found_from_the_message_when_the_error_has_no_name():
    bare = ImportError("No module named 'visqol'")  # as some libraries re-raise it
    assert bare.name is None and "pip install 'apollo-restore[eval]'" in missing_extra(bare)
    assert missing_extra(ModuleNotFoundError("No module named 'somethingelse'")) is None
    assert missing_extra(ImportError("Couldn't find the FluidSynth library.")) is None
