"""The bad-input run: every case from issue 12's list goes through the real `apollo` CLI, and for each we record
the exit code, what it printed on stderr, and which files it left behind or changed.

``tests/test_bad_inputs.py`` runs it and asserts, per case: the expected exit code, exactly one line on stderr
(none for a case that must work), no traceback, no "internal error", the expected words in the message, nothing
left behind (no temporary, no partial output, nothing in TMPDIR) and every file that was there before (the
input, an existing output) unchanged.

``python tests/bad_inputs.py --markdown docs/robustness.md [--before-src OLD/src]`` writes the bad-input table
(with the behaviour of an older checkout beside it when ``--before-src`` is given). The run happens in a child
process (``--json``) with the package from ``PYTHONPATH``, its address space capped at ``MEMORY_LIMIT`` so that a
configuration asking for tens of GiB fails instead of taking the machine down.

Cases run in-process (``cli.main``) with stdout/stderr captured at the file-descriptor level, except those that
need a real process (signals). Each runs in a fresh folder with its own TMPDIR.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prerequisites import REFERENCE_FIXTURES

REPO = Path(__file__).resolve().parents[1]
REFERENCE_BIN = REFERENCE_FIXTURES / "apollo_tiny_official.bin"
#: address space of the process that runs the cases
MEMORY_LIMIT = 6 << 30
PRECIOUS = b"an existing output that must survive"
#: what other programs keep in TMPDIR on purpose (torch's compile cache), not temporaries of a run
FOREIGN_CACHES = ("torchinductor_",)


@dataclass
class Case:
    """One bad input. ``setup(work)`` prepares files in the (current) folder ``work`` and returns the argv of
    ``apollo``; ``code`` is the exit code it must give and ``needle`` words its message must hold; ``outputs``
    are the files it may create (and ``replaces`` those it may change), relative to ``work``."""

    name: str
    setup: Callable[[Path], list[str]]
    code: int
    needle: str = ""
    outputs: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    block_module: str | None = None  # run with this optional package missing
    process: Callable[[Path, list[str]], tuple[int, str]] | None = None  # how to run it, if not in-process
    check: Callable[[Path], list[str]] | None = None  # more conditions; returns the problems found
    needs_reference: bool = False  # reads the reference fixtures: not run without them (the test skips it)


@dataclass
class Outcome:
    case: str
    command: str
    code: int
    stderr: str
    left: list[str] = field(default_factory=list)  # new files not among the case's outputs
    changed: list[str] = field(default_factory=list)  # files that were there and changed
    tmpdir_left: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # from the case's own check
    seconds: float = 0.0


# -- material -----------------------------------------------------------------------------------------------


def _wav(path: Path, seconds: float = 0.5, channels: int = 2) -> Path:
    import soundfile as sf

    t = np.arange(round(seconds * 44100)) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, np.stack([tone] * channels, axis=1).astype(np.float32), 44100)
    return path


def _precious(path: Path) -> Path:
    path.write_bytes(PRECIOUS)
    return path


def _tiny_state() -> dict:
    import torch

    from apollo_restore.model import Apollo, ApolloConfig

    torch.manual_seed(0)
    model = Apollo(ApolloConfig(feature_dim=16, num_layers=1, num_heads=2))
    return {"config": model.config.to_dict(), "weights": {k: v.contiguous() for k, v in model.state_dict().items()}}


def _native(folder: Path, config: dict | None = None, config_text: str | None = None, metadata: str | None = None,
            change: Callable[[dict], None] | None = None) -> Path:
    """A tiny native checkpoint folder, with its config (or raw config text / metadata) as given."""
    from safetensors.torch import save_file

    state = _tiny_state()
    if change is not None:
        change(state["weights"])
    folder.mkdir()
    text = config_text if config_text is not None else json.dumps(
        {"format": "apollo-restore/1", "model": {**state["config"], **(config or {})}})
    if metadata is not None:
        save_file(state["weights"], folder / "model.safetensors", metadata={"config": metadata})
    else:
        save_file(state["weights"], folder / "model.safetensors")
        (folder / "config.json").write_text(text)
    return folder


def _reference_state() -> dict:
    import torch
    from torch.torch_version import TorchVersion

    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(REFERENCE_BIN, map_location="cpu", weights_only=True)["state_dict"]


def _restore(work: Path, checkpoint: str | Path, *extra: str) -> list[str]:
    _wav(work / "in.wav")
    _precious(work / "out.wav")
    return ["restore", "-q", "in.wav", "-o", "out.wav", "--checkpoint", str(checkpoint), *extra]


def _tiny(work: Path) -> Path:
    return _native(work / "tiny")


# -- cases --------------------------------------------------------------------------------------------------


def _degrade_self(spelling: Callable[[Path], str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        (work / "songs").mkdir()
        _wav(work / "songs" / "in.flac")
        return ["degrade", "songs/in.flac", spelling(work)]

    return setup


def _degrade_folder_onto_itself(work: Path) -> list[str]:
    (work / "songs").mkdir()
    _wav(work / "songs" / "in.flac")
    return ["degrade", "songs", "songs"]


def _link(work: Path) -> str:
    (work / "link.flac").symlink_to(work / "songs" / "in.flac")
    return "link.flac"


def _config_case(change: dict) -> Callable[[Path], list[str]]:
    return lambda work: _restore(work, _native(work / "model", config=change))


def _stride0(work: Path) -> list[str]:
    import torch

    state = {k: torch.zeros(1).expand(*[s * 256 if s == 32 else s for s in v.shape])
             for k, v in _reference_state().items()}
    torch.save({"state_dict": state}, work / "stride0.bin")
    return ["convert", "stride0.bin", "converted"]


def _set_weight(value: float) -> Callable[[dict], None]:
    def change(weights: dict) -> None:
        weights["blocks.0.band.qkv.weight"][3, 5] = value

    return change


def _foreign_nan(work: Path) -> list[str]:
    import torch

    state = _reference_state()
    state["net.1.band_net.weight.weight"][0, 0] = float("nan")
    torch.save({"state_dict": state}, work / "nan.bin")
    return _restore(work, "nan.bin")


def _file_checkpoint(content: bytes | Callable[[Path], None], name: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        if callable(content):
            content(work / name)
        else:
            (work / name).write_bytes(content)
        return _restore(work, name)

    return setup


def _truncated_torch(path: Path) -> None:
    import torch

    torch.save({"state_dict": {"a": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:400])


def _loop_checkpoint(work: Path) -> list[str]:
    (work / "loop").symlink_to("loop")
    return _restore(work, "loop")


def _loop_input(work: Path) -> list[str]:
    (work / "loop.wav").symlink_to("loop.wav")
    _precious(work / "out.wav")
    return ["restore", "-q", "loop.wav", "-o", "out.wav", "--checkpoint", str(_tiny(work))]


def _loop_in_folder(work: Path) -> list[str]:
    (work / "music").mkdir()
    _wav(work / "music" / "a.wav")
    (work / "music" / "loop.wav").symlink_to("loop.wav")
    (work / "music" / "up").symlink_to("..")  # a folder cycle
    return ["restore", "-q", "music", "-o", "restored", "--checkpoint", str(_tiny(work))]


def _default_folder_in_cwd(work: Path) -> list[str]:
    (work / "default").mkdir()  # e.g. the output folder of an earlier restore
    _wav(work / "in.wav")
    return ["restore", "-q", "in.wav", "-o", "default/in.wav", "--checkpoint", "default"]


def _explicit_default_folder(work: Path) -> list[str]:
    (work / "default").mkdir()
    return _restore(work, "./default")


def _with_args(*args: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        _wav(work / "in.wav")
        _precious(work / "out.wav")
        tiny = str(_tiny(work)) if "{tiny}" in args else ""
        return [arg.replace("{tiny}", tiny) for arg in args]

    return setup


def _keeps_mode(work: Path) -> list[str]:
    argv = _with_args("restore", "-q", "in.wav", "-o", "out.wav", "--checkpoint", "{tiny}")(work)
    (work / "out.wav").chmod(0o600)
    return argv


def _mode_is_600(work: Path) -> list[str]:
    mode = (work / "out.wav").stat().st_mode & 0o777
    return [] if mode == 0o600 else [f"out.wav mode {mode:o}, was 600"]


def _train_state(work: Path, resume_steps: int = 2) -> list[str]:
    """A real 1-step training run, then ``state.pt`` with 17 bytes flipped inside a tensor; argv resumes it."""
    import yaml

    from synthetic_data import write_synthetic_dataset

    data = write_synthetic_dataset(work / "data", "folder", n_songs=2, seconds=1.0, splits=("train", "valid"))
    config = {
        "model": {"feature_dim": 16, "num_layers": 1, "num_heads": 2},
        "data": {"roots": [str(data)], "layouts": ["folder"], "clip_seconds": 0.25},
        "validation": {"items": 1},
        "discriminator": {"fft_sizes": [64], "hidden_channels": 4}, "loss": {"fft_sizes": [64]},
        "train": {"run_dir": str(work / "run"), "batch_size": 1, "epoch_size": 2, "max_steps": 1, "num_workers": 0,
                  "log_every_steps": 1, "device": "cpu", "progress": False},
    }
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    with _captured() as captured:
        code = _in_process(["train", "train.yaml"], None)
    assert code == 0, captured.getvalue()
    flip_tensor_bytes(work / "run" / "state.pt")
    return ["train", "train.yaml", "--set", f"train.max_steps={resume_steps}"]


def flip_tensor_bytes(state_path: Path, count: int = 17) -> None:
    """Corrupt ``count`` float32 values in the middle of the largest tensor of a torch zip (it still loads)."""
    import struct
    import zipfile

    with zipfile.ZipFile(state_path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(state_path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
    for i in range(count):
        data[start + 4 * i + 3] ^= 0x40  # an exponent bit: the value changes by orders of magnitude
    state_path.write_bytes(bytes(data))


# -- real processes -----------------------------------------------------------------------------------------


def _env(work: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(work / ".tmp")}


def _run_process(work: Path, argv: list[str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "apollo_restore", *argv], cwd=work, env=_env(work),
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stderr


def _long_restore(work: Path) -> list[str]:
    _wav(work / "long.wav", seconds=20)
    _precious(work / "out.wav")
    return ["restore", "-q", "long.wav", "-o", "out.wav", "--block-seconds", "2", "--checkpoint", str(_tiny(work))]


def _killed_in_music(work: Path) -> list[str]:
    (work / "music").mkdir()
    _wav(work / "music" / "long.wav", seconds=20)
    return ["restore", "-q", "music/long.wav", "-o", "music/out.wav", "--block-seconds", "2", "--checkpoint",
            str(_tiny(work))]


def _partial_outputs(folder: Path) -> list[Path]:
    """Hidden files beside an output that a writer is filling (any version's naming)."""
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.is_file() and p.name != ".tmp"]


def _signalled(signum: int, folder: Path | None = None) -> Callable[[Path, list[str]], tuple[int, str]]:
    """Run argv in a process and send it ``signum`` once it writes a partial output (in ``folder``)."""

    def run(work: Path, argv: list[str]) -> tuple[int, str]:
        process = subprocess.Popen([sys.executable, "-m", "apollo_restore", *argv], cwd=work, env=_env(work),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not _partial_outputs(folder or work) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=300)
        return process.returncode, stderr

    return run


def _after_sigkill(work: Path, argv: list[str]) -> tuple[int, str]:
    """A restore into music/ killed by SIGKILL (its partial output and decoded copy in TMPDIR stay behind), then a
    folder restore of music/ into music/ (as FLAC), which must neither read the partial output nor leave either."""
    code, _ = _signalled(signal.SIGKILL, work / "music")(work, argv)
    assert code == -signal.SIGKILL, f"the restore ended by itself ({code}) before it could be killed"
    assert _partial_outputs(work / "music"), "SIGKILL left no partial output to test with"
    assert [p for p in (work / ".tmp").iterdir() if not p.name.startswith(FOREIGN_CACHES)], "no stale decoded copy"
    return _run_process(work, ["restore", "-q", "music", "-o", "music", "--format", "flac", "--checkpoint",
                               argv[-1]])


def _no_stale_partial(work: Path) -> list[str]:
    stale = [p.name for p in _partial_outputs(work / "music")]
    found = sorted(p.name for p in (work / "music").rglob("*") if not p.name.startswith("."))
    problems = [f"stale partial output still there: {stale}"] if stale else []
    if found != ["long.flac", "long.wav"]:
        problems.append(f"music/ holds {found}: a partial output was taken for input")
    return problems


CASES: list[Case] = [
    Case("degrade IN IN", _degrade_self(lambda w: "songs/in.flac"), 1, "overwrite the input"),
    Case("degrade IN IN, spelled ./songs/../songs/in.flac", _degrade_self(lambda w: "./songs/../songs/in.flac"), 1,
         "overwrite the input"),
    Case("degrade IN LINK (a symlink to IN)", _degrade_self(_link), 1, "overwrite the input"),
    Case("degrade FOLDER FOLDER (maps in.flac onto itself)", _degrade_folder_onto_itself, 1, "overwrite the input"),
    Case("restore IN -o IN", lambda w: ["restore", "-q", str(_wav(w / "in.wav")), "-o", "./in.wav"], 1,
         "overwrite the input"),
    Case("config feature_dim 16384", _config_case({"feature_dim": 16384}), 1, "feature_dim 16384 is out of range"),
    Case("config win_ms 1e6", _config_case({"win_ms": 1e6}), 1, "win_ms 1e+06 is out of range"),
    Case("config num_bands 1e9", _config_case({"num_bands": 10**9}), 1, "num_bands 1000000000 is out of range"),
    Case("config band_widths of 10^6 entries", _config_case({"band_widths": [1] * 10**6}), 1, "band_widths"),
    Case("reference .bin with stride-0 tensors (40 GiB dense)", _stride0, 1, "stride-0", needs_reference=True),
    Case("config.json feature_dim 32, weights 16", _config_case({"feature_dim": 32}), 1,
         "weights do not fit the model config: 35 mis-shaped tensors"),
    Case("config.json num_layers 2, weights 1", _config_case({"num_layers": 2}), 1, "27 missing keys"),
    Case("one Inf weight (native)", lambda w: _restore(w, _native(w / "m", change=_set_weight(float("inf")))), 1,
         "Inf or NaN"),
    Case("one NaN weight (reference .bin)", _foreign_nan, 1, "net.1.band_net.weight.weight", needs_reference=True),
    Case("config.json not JSON", lambda w: _restore(w, _native(w / "m", config_text="{nope")), 1, "not valid JSON"),
    Case("config.json feature_dim \"16\" (a string)", _config_case({"feature_dim": "16"}), 1,
         "'model.feature_dim' must be an integer"),
    Case("config.json causal \"yes\"", _config_case({"causal": "yes"}), 1, "'model.causal' must be true or false"),
    Case("config.json without \"model\"", lambda w: _restore(w, _native(w / "m", config_text='{"format": 1}')), 1,
         '"model" mapping'),
    Case("safetensors metadata config not JSON", lambda w: _restore(w, _native(w / "m", metadata="[1, 2")), 1,
         "not valid JSON"),
    Case("--checkpoint a WAV file", _file_checkpoint(lambda p: _wav(p), "song.wav"), 1,
         "not a checkpoint (an audio file)"),
    Case("--checkpoint a text file", _file_checkpoint(b"not a model\n", "notes.bin"), 1, "not a checkpoint"),
    Case("--checkpoint an empty file", _file_checkpoint(b"", "empty.pt"), 1, "not a checkpoint (an empty file)"),
    Case("--checkpoint a truncated torch file", _file_checkpoint(_truncated_torch, "cut.pt"), 1,
         "not a readable PyTorch checkpoint"),
    Case("--checkpoint a symlink loop", _loop_checkpoint, 1, "symlink loop"),
    Case("input a symlink loop", _loop_input, 1, "symlink loop"),
    Case("folder input holding a symlink loop and a folder cycle", _loop_in_folder, 0, outputs=("restored/a.wav",)),
    Case("--checkpoint default, ./default is a folder", _default_folder_in_cwd, 0, outputs=("default/in.wav",)),
    Case("--checkpoint ./default, an empty folder", _explicit_default_folder, 1, "--checkpoint default"),
    Case("--block-seconds nan", _with_args("restore", "in.wav", "--block-seconds", "nan"), 2, "from 1 to 600"),
    Case("--block-seconds inf", _with_args("restore", "in.wav", "--block-seconds", "inf"), 2, "from 1 to 600"),
    Case("--block-seconds 0.001", _with_args("restore", "in.wav", "--block-seconds", "0.001"), 2, "from 1 to 600"),
    Case("stream --raw --channels 1e6", _with_args("stream", "--raw", "-", "--channels", "1e6", "--rate", "44100"),
         2, "from 1 to 64"),
    Case("stream --raw --channels 1000000",
         _with_args("stream", "--raw", "-", "--channels", "1000000", "--rate", "44100"), 2, "from 1 to 64"),
    Case("stream --chunk-ms nan", _with_args("stream", "in.wav", "-o", "out.wav", "--chunk-ms", "nan"), 2,
         "--chunk-ms"),
    Case("degrade --bitrate 100000", _with_args("degrade", "in.wav", "x.flac", "--bitrate", "100000"), 2,
         "from 6 to 512"),
    Case("bench --long inf", _with_args("bench", "--config", "16x1", "--long", "inf"), 2, "--long"),
    Case("replace an output of mode 0600", _keeps_mode, 0, replaces=("out.wav",), check=_mode_is_600),
    Case("degrade without lameenc installed", _with_args("degrade", "in.wav", "x.flac"), 1,
         "pip install 'apollo-restore[codecs]'", block_module="lameenc"),
    Case("train without PyYAML installed", _with_args("train", str(REPO / "configs" / "cpu.yaml")), 1,
         "pip install 'apollo-restore[train]'", block_module="yaml"),
    Case("make-data without music21 installed", _with_args("make-data", "data"), 1,
         "pip install 'apollo-restore[data]'", block_module="music21"),
    Case("SIGTERM during a restore", _long_restore, 143, "SIGTERM", process=_signalled(signal.SIGTERM)),
    Case("folder restore after a SIGKILLed restore left its partial output there", _killed_in_music, 0,
         process=_after_sigkill, outputs=("music/long.flac",), check=_no_stale_partial),
    Case("resume a training state with 17 flipped bytes", _train_state, 1, "does not match its checksum",
         outputs=("run", "train.yaml", "data")),
]


# -- running ------------------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> content digest and mode of every file (links as their target) under ``folder``."""
    found = {}
    for path in folder.rglob("*"):
        relative = str(path.relative_to(folder))
        if relative.startswith(".tmp"):
            continue
        if path.is_symlink():
            found[relative] = f"-> {os.readlink(path)}"
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            found[relative] = f"{digest} {path.stat().st_mode & 0o777:o}"
    return found


@contextlib.contextmanager
def _captured() -> io.StringIO:
    """stdout to nothing and stderr (file descriptors 1 and 2, so C libraries' output too) into the result."""
    result = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as err, open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            yield result
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            err.seek(0)
            result.write(err.read().decode("utf-8", "replace"))


def _in_process(argv: list[str], block_module: str | None) -> int:
    from apollo_restore.cli import main

    with _blocked(block_module):
        try:
            return main(argv)
        except SystemExit as stop:
            return int(stop.code or 0)


@contextlib.contextmanager
def _blocked(module: str | None):
    """Inside, ``import module`` fails as if the package were not installed (a None entry in ``sys.modules``)."""
    loaded = sys.modules.get(module) if module else None
    if module:
        sys.modules[module] = None
    try:
        yield
    finally:
        if module:
            del sys.modules[module]
            if loaded is not None:
                sys.modules[module] = loaded


def run_case(case: Case, root: Path) -> Outcome:
    work = root / "".join(c if c.isalnum() else "-" for c in case.name)[:60]
    work.mkdir(parents=True)
    (work / ".tmp").mkdir()
    previous_cwd, previous_tempdir = os.getcwd(), tempfile.tempdir
    os.chdir(work)
    tempfile.tempdir = str(work / ".tmp")
    os.environ["TMPDIR"] = tempfile.tempdir
    started = time.perf_counter()
    try:
        argv = case.setup(work)
        before = _snapshot(work)
        tmp_before = set((work / ".tmp").rglob("*"))
        if case.process is not None:
            code, stderr = case.process(work, argv)
        else:
            with _captured() as captured:
                code = _in_process(argv, case.block_module)
            stderr = captured.getvalue()
        after = _snapshot(work)
        allowed = tuple(case.outputs)
        left = [p for p in after if p not in before and not p.startswith(allowed)]
        changed = [p for p in before if after.get(p) != before[p] and not p.startswith(case.replaces)]
        tmp_left = sorted(str(p.relative_to(work / ".tmp")) for p in (work / ".tmp").rglob("*")
                          if p not in tmp_before and not p.name.startswith(FOREIGN_CACHES))
        problems = case.check(work) if case.check is not None else []
    finally:
        os.chdir(previous_cwd)
        tempfile.tempdir = previous_tempdir
    def relative(text: str) -> str:
        return text.replace(f"{work}/", "").replace(str(work), ".")

    return Outcome(case.name, relative("apollo " + " ".join(argv)), code, relative(stderr), left, changed, tmp_left,
                   problems, time.perf_counter() - started)


def run_all(names: list[str] | None = None) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as root:
        return [run_case(case, Path(root)) for case in CASES if (names is None or case.name in names)
                and (REFERENCE_BIN.is_file() or not case.needs_reference)]


def failures(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with ``outcome`` for ``case`` (empty when the case is handled as it must be)."""
    wrong = []
    lines = outcome.stderr.splitlines()
    if outcome.code != case.code:
        wrong.append(f"exit {outcome.code}, expected {case.code}")
    if case.code == 0 and lines:
        wrong.append(f"printed on stderr: {lines[:3]}")
    if case.code != 0 and len(lines) != 1:
        wrong.append(f"{len(lines)} lines on stderr, expected one")
    for bad in ("Traceback", "internal error"):
        if bad in outcome.stderr:
            wrong.append(f"stderr has {bad!r}")
    if case.needle not in outcome.stderr:
        wrong.append(f"message lacks {case.needle!r}")
    for kind, paths in (("left behind", outcome.left), ("changed", outcome.changed),
                        ("left in TMPDIR", outcome.tmpdir_left)):
        if paths:
            wrong.append(f"{kind}: {paths[:5]}")
    return wrong + outcome.problems


# -- the table ----------------------------------------------------------------------------------------------


def _cell(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
    return text.replace("|", "\\|") or "(nothing)"


def _files_cell(outcome: Outcome) -> str:
    parts = [f"new: {', '.join(outcome.left[:3])}" if outcome.left else "",
             f"changed: {', '.join(outcome.changed[:3])}" if outcome.changed else "",
             f"TMPDIR: {', '.join(outcome.tmpdir_left[:2])}" if outcome.tmpdir_left else ""]
    return "; ".join(p for p in parts if p) or "none"


def markdown(outcomes: list[Outcome], before: list[Outcome] | None, command: str, label: str = "before") -> str:
    by_name = {o.case: o for o in before or []}
    cases = {c.name: c for c in CASES}
    head = "| case | exit | message (stderr) | files left or changed | verdict |"
    rule = "|---|---|---|---|---|"
    if before is not None:
        head += f" {label}: exit, message, files, verdict |"
        rule += "---|"
    rows = [head, rule]
    for outcome in outcomes:
        wrong = failures(cases[outcome.case], outcome)
        row = (f"| {_cell(outcome.case)} | {outcome.code} | {_cell(outcome.stderr)} | {_files_cell(outcome)} | "
               f"{'ok' if not wrong else _cell('NOT OK: ' + '; '.join(wrong))} |")
        if before is not None:
            old = by_name.get(outcome.case)
            old_wrong = failures(cases[outcome.case], old) if old else []
            verdict = "**not ok**: " + "; ".join(old_wrong) if old_wrong else "ok"
            row += (f" {old.code}, {_cell(old.stderr, 160)}, {_files_cell(old)}; {_cell(verdict, 200)} |"
                    if old else " (not run) |")
        rows.append(row)
    return "\n".join([
        "<!-- generated by: " + command + " -->",
        "",
        "\n".join(rows),
    ]) + "\n"


def _run_child(src: Path | None, names: list[str] | None = None) -> list[Outcome]:
    """Run the cases in a child process (package from ``src``, or this checkout), memory-capped."""
    env = {**os.environ, "PYTHONPATH": str(src or REPO / "src"), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, __file__, "--json", *(["--only", *names] if names else [])]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    done = subprocess.run(argv, env=env, capture_output=True, text=True, preexec_fn=limit, timeout=3000)
    if done.returncode != 0:
        raise RuntimeError(f"bad-input runner failed ({done.returncode}): {done.stderr[-3000:]}")
    return [Outcome(**o) for o in json.loads(done.stdout.splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="run the cases here; print the outcomes as JSON")
    parser.add_argument("--only", nargs="+", default=None, help="case names")
    parser.add_argument("--markdown", type=Path, help="write the table (with the run's intro) to this file")
    parser.add_argument("--before-src", type=Path, help="also run an older checkout's src/ for comparison")
    parser.add_argument("--before-label", default="before", help="its column's name, e.g. 'before (5bc572a)'")
    args = parser.parse_args()
    if args.json:
        outcomes = run_all(args.only)
        for outcome in outcomes:
            print(f"{outcome.seconds:6.1f} s  {outcome.case}", file=sys.stderr)
        print(json.dumps([asdict(o) for o in outcomes]))
        return
    outcomes = _run_child(None, args.only)
    before = _run_child(args.before_src, args.only) if args.before_src else None
    command = f"python tests/bad_inputs.py --markdown {args.markdown}" + (
        f" --before-src OLD/src --before-label {args.before_label!r}" if args.before_src else "")
    table = markdown(outcomes, before, command, args.before_label)
    if args.markdown is None:
        print(table)
        return
    text = args.markdown.read_text() if args.markdown.exists() else ""
    start, end = "<!-- bad-input table -->", "<!-- end of bad-input table -->"
    if start in text and end in text:
        text = text[: text.index(start) + len(start)] + "\n" + table + text[text.index(end):]
    else:
        text += f"\n{start}\n{table}{end}\n"
    args.markdown.write_text(text)
    bad = sum(1 for o in outcomes if failures({c.name: c for c in CASES}[o.case], o))
    print(f"{args.markdown}: {len(outcomes)} cases, {bad} not ok")


if __name__ == "__main__":
    main()
