import json
import os
import pickle
import re
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from apollo_restore.checkpoint import check_state_fits, load_model, load_state, save_model
from apollo_restore.cli import main
from apollo_restore.errors import ApolloError
from conftest import tiny_model

LAYOUTS = ["apollo_tiny_official.bin", "apollo_tiny_msst.ckpt", "apollo_tiny_lightning.ckpt"]


@pytest.mark.parametrize("name", LAYOUTS)
def test_reference_layouts_reproduce_the_reference_output(reference_fixtures, name):
    model = load_model(reference_fixtures / name)
    config = model.config
    assert (config.feature_dim, config.num_layers, config.sample_rate) == (32, 2, 44100)
    assert config.widths == (5,) * 79 + (47,)
    audio = torch.from_numpy(np.load(reference_fixtures / "input.npy"))
    expected = np.load(reference_fixtures / "output.npy")
    with torch.no_grad():
        out = model(audio).numpy()
    assert np.abs(out - expected).max() <= 1e-4


def test_convert_writes_a_native_checkpoint_that_gives_the_same_output(reference_fixtures, tmp_path):
    assert main(["convert", str(reference_fixtures / LAYOUTS[0]), str(tmp_path / "native")]) == 0
    assert {p.name for p in (tmp_path / "native").iterdir()} == {"model.safetensors", "config.json", "README.md"}
    assert json.loads((tmp_path / "native" / "config.json").read_text())["model"]["feature_dim"] == 32
    audio = torch.from_numpy(np.load(reference_fixtures / "input.npy"))
    with torch.no_grad():
        a = load_model(tmp_path / "native")(audio)
        b = load_model(reference_fixtures / LAYOUTS[0])(audio)
    assert torch.equal(a, b)


def test_native_round_trip_by_folder_and_by_file(tmp_path):
    model = tiny_model(seed=3, causal=True)
    save_model(model, tmp_path / "m", card="# tiny\n")
    for path in (tmp_path / "m", tmp_path / "m" / "model.safetensors"):
        config, state, gate = load_state(path)
        assert gate is None
        assert config == model.config
        for key, value in model.state_dict().items():
            assert torch.equal(state[key], value), key


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"BN.0.0.weight": torch.ones(3)}, "payload": _Evil(marker)}, evil)
    with pytest.raises(ApolloError, match=r"refused to load.*system"):
        load_model(evil)
    assert main(["convert", str(evil), str(tmp_path / "out")]) == 1
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    # the same payload in a plain pickle (not a torch zip) is refused too
    plain = tmp_path / "evil.bin"
    plain.write_bytes(pickle.dumps({"state_dict": _Evil(marker)}))
    with pytest.raises(ApolloError):
        load_model(plain)
    # ... and under any name the loader sniffs: a folder's model.safetensors, a .safetensors, a .txt
    (tmp_path / "folder").mkdir()
    for disguised in (tmp_path / "folder" / "model.safetensors", tmp_path / "x.safetensors", tmp_path / "x.txt"):
        disguised.write_bytes(evil.read_bytes())
    for target in (tmp_path / "folder", tmp_path / "x.safetensors", tmp_path / "x.txt"):
        with pytest.raises(ApolloError, match="refused to load"):
            load_state(target)
        assert main(["restore", "--checkpoint", str(target), str(tmp_path / "none.wav")]) == 1
    assert not marker.exists()


def test_not_a_checkpoint_gives_one_line_errors(tmp_path, capsys):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    broken = tmp_path / "broken.bin"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("archive/data.pkl", b"garbage")
    for path in (junk, broken, tmp_path / "missing.bin", tmp_path):
        assert main(["convert", str(path), str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and "error" in err
    not_apollo = tmp_path / "other.pt"
    torch.save({"state_dict": {"layer.weight": torch.ones(2)}}, not_apollo)
    with pytest.raises(ApolloError, match="does not look like an Apollo checkpoint"):
        load_model(not_apollo)


def _reference_state(reference_fixtures) -> dict[str, torch.Tensor]:
    from apollo_restore.checkpoint import _generator_state, _torch_load_safely

    path = reference_fixtures / LAYOUTS[0]
    return _generator_state(_torch_load_safely(path), path)


def _run_limited(args: list[str], memory_bytes: int = 4 << 30) -> subprocess.CompletedProcess:
    """`apollo ARGS` in a process that cannot map more than ``memory_bytes`` (a blow-up fails, not the host)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "apollo_restore", *args], capture_output=True, text=True,
                          env=env, preexec_fn=limit, timeout=300)


def test_stride_zero_tensors_are_refused_without_allocating_their_shape(reference_fixtures, tmp_path):
    # every tensor an expanded view of one stored number, feature_dim 32 -> 8192: ~160 KB on disk, ~40 GiB dense
    state = {k: torch.zeros(1).expand(*[s * 256 if s == 32 else s for s in v.shape])
             for k, v in _reference_state(reference_fixtures).items()}
    torch.save(state, tmp_path / "stride0.bin")
    assert (tmp_path / "stride0.bin").stat().st_size < 1 << 20
    result = _run_limited(["convert", str(tmp_path / "stride0.bin"), str(tmp_path / "out")])
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "stride-0" in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "out").exists()


def _native_with_config(folder: Path, model_config: dict | str, in_metadata: bool) -> Path:
    """A tiny model's weights with ``model_config`` (a dict, or raw text) as its config."""
    folder.mkdir()
    state = {k: v.contiguous() for k, v in tiny_model().state_dict().items()}
    text = model_config if isinstance(model_config, str) else json.dumps(
        {"format": "apollo-restore/1", "model": model_config})
    if in_metadata:
        save_file(state, folder / "model.safetensors", metadata={"config": text})
    else:
        save_file(state, folder / "model.safetensors")
        (folder / "config.json").write_text(text)
    return folder


BAD_CONFIGS = [
    ({"feature_dim": 16384}, "feature_dim 16384 is out of range"),
    ({"win_ms": 1e6}, "win_ms 1e+06 is out of range"),
    ({"num_bands": 10**9}, "num_bands 1000000000 is out of range"),
    ({"num_bands": 1e9}, "'model.num_bands' must be an integer"),
    ({"num_layers": "2"}, "'model.num_layers' must be an integer"),
    ({"causal": "yes"}, "'model.causal' must be true or false"),
    ({"sample_rate": -44100}, "sample_rate -44100 is out of range"),
    ({"band_widths": [5] * 3}, "band_widths has 3 entries for num_bands 80"),
    ({"feature_dims": 16}, "unknown config key 'model.feature_dims'"),
    ({"feature_dim": 32}, "weights do not fit the model config: 35 mis-shaped tensors (split.projections.0.weight "
                          "[79, 16, 11] where the config needs [79, 32, 11]"),
    ({"num_layers": 2}, "weights do not fit the model config: 27 missing keys (blocks.1.band.attn_norm.weight, "),
]


@pytest.mark.parametrize("in_metadata", [True, False], ids=["metadata", "config.json"])
@pytest.mark.parametrize("change,message", BAD_CONFIGS, ids=[m.split(" ")[0] for _, m in BAD_CONFIGS])
def test_every_config_field_is_checked_before_allocating(tmp_path, capsys, change, message, in_metadata):
    config = {**tiny_model().config.to_dict(), **change}
    folder = _native_with_config(tmp_path / "m", config, in_metadata)
    assert main(["convert", str(folder), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "internal error" not in err, err
    assert len(err) < 700 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,message", [
    ("{not json", "not valid JSON"),
    ('{"format": "apollo-restore/1"}', 'a "model" mapping'),
    ('{"format": "apollo-restore/1", "model": [1, 2]}', 'a "model" mapping'),
    ('["model"]', 'a "model" mapping'),
    ('{"format": "apollo-restore/9", "model": {}}', "format 'apollo-restore/9'"),
])
def test_malformed_config_json_or_metadata_is_one_line(tmp_path, text, message):
    for in_metadata in (True, False):
        folder = _native_with_config(tmp_path / f"m{in_metadata}", text, in_metadata)
        with pytest.raises(ApolloError, match=re.escape(message)):
            load_model(folder)


def test_a_huge_config_value_gives_a_short_message(tmp_path, capsys):
    folder = _native_with_config(tmp_path / "m", {**tiny_model().config.to_dict(), "band_widths": [1] * 10**6},
                                 in_metadata=False)
    assert main(["restore", "--checkpoint", str(folder), str(tmp_path / "none.wav")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 700, len(err)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_non_finite_weight_is_refused_naming_the_tensor(tmp_path, reference_fixtures, value):
    model = tiny_model()
    with torch.no_grad():
        model.blocks[0].band.qkv.weight[3, 5] = value
    save_model(model, tmp_path / "native")
    with pytest.raises(ApolloError, match=r"Inf or NaN.*blocks\.0\.band\.qkv\.weight has 1 of"):
        load_model(tmp_path / "native")
    state = _reference_state(reference_fixtures)
    state["net.1.band_net.weight.weight"][0, 0] = value
    torch.save({"state_dict": state}, tmp_path / "foreign.bin")
    with pytest.raises(ApolloError, match=r"Inf or NaN.*net\.1\.band_net\.weight\.weight"):
        load_model(tmp_path / "foreign.bin")


def test_files_that_are_not_checkpoints_say_so(tmp_path, capsys):
    wav = tmp_path / "song.wav"
    sf.write(wav, np.zeros((100, 1), np.float32), 44100)
    text, empty = tmp_path / "notes.bin", tmp_path / "empty.pt"
    text.write_text("just some text\n")
    empty.write_bytes(b"")
    truncated = tmp_path / "cut.pt"
    torch.save({"state_dict": {"a": torch.ones(100)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    (tmp_path / "loop").symlink_to("loop")
    for path, message in ((wav, "not a checkpoint (an audio file)"), (text, "not a checkpoint"),
                          (empty, "not a checkpoint (an empty file)"), (truncated, "not a readable PyTorch"),
                          (plain, "not a readable PyTorch"), (tmp_path / "loop", "symlink loop")):
        assert main(["restore", "--checkpoint", str(path), str(wav), "-o", str(tmp_path / "o.wav")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "internal error" not in err, err


def test_bundled_names_win_over_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # e.g. an earlier restore's output folder
    assert load_model("default").config == load_model(None).config
    with pytest.raises(ApolloError, match=r"folder has no model.safetensors.*--checkpoint default"):
        load_model("./default")
    save_model(tiny_model(), tmp_path / "mine")
    assert load_model("mine").config.feature_dim == 16  # a bare name that is no bundled model is a path


def test_weights_that_do_not_fit_name_a_few_keys_of_each_kind_and_count_the_rest():
    config = tiny_model().config
    shapes = {k: tuple(v.shape) for k, v in tiny_model().state_dict().items()}
    shapes.pop("merge.norms.0.weight")
    shapes["blocks.0.band.qkv.weight"] = (1, 2)
    shapes.update({f"extra.{i}": (1,) for i in range(10)})
    with pytest.raises(ApolloError) as error:
        check_state_fits(config, shapes, "x.safetensors")
    assert str(error.value) == (
        "x.safetensors: weights do not fit the model config: 1 missing keys (merge.norms.0.weight); "
        "10 unexpected keys (extra.0, extra.1, extra.2 and 7 more); 1 mis-shaped tensors "
        "(blocks.0.band.qkv.weight [1, 2] where the config needs [48, 16])")


def test_folder_digest_covers_weights_and_config_not_the_card(tiny_checkpoint):
    """An evaluation reuses a folder's restored files while its digest holds: a card edit keeps it, a config
    or weights edit does not."""
    from apollo_restore import checkpoint

    before = checkpoint.file_sha256(tiny_checkpoint)
    (tiny_checkpoint / checkpoint.CARD_FILE).write_text("# a new card\n")
    assert checkpoint.file_sha256(tiny_checkpoint) == before
    config = tiny_checkpoint / checkpoint.CONFIG_FILE
    config.write_text(config.read_text() + " ")
    assert checkpoint.file_sha256(tiny_checkpoint) != before
