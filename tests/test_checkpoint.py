import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from apollo_restore.checkpoint import load_model, load_state, save_model
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
