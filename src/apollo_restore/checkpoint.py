"""Checkpoints: our native format (safetensors + JSON config), bundled models, and foreign reference layouts.

Native: a folder with ``model.safetensors`` (config also embedded in its metadata), ``config.json`` and an
optional ``README.md`` model card. Foreign files (``.bin``/``.ckpt``/``.pt``/``.pth`` from the reference
release, community frameworks or training checkpoints) are read with ``torch.load(weights_only=True)`` plus a
tiny allow-list, so no pickled code ever runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from apollo_restore.errors import ApolloError
from apollo_restore.files import atomic_write
from apollo_restore.gate import Gate, GateConfig
from apollo_restore.model import Apollo, ApolloConfig
from apollo_restore.model.reference import infer_config, is_reference_state_dict, reference_to_native

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
REGISTRY_FILE = "registry.json"
FORMAT = "apollo-restore/1"
#: prefixes under which training frameworks store the generator
_GENERATOR_PREFIXES = ("audio_model.", "generator.", "model.", "module.")


def models_root() -> Path:
    """Folder of the bundled models (inside the installed package)."""
    return Path(str(resources.files("apollo_restore") / "assets" / "models"))


def bundled_models() -> dict[str, Path]:
    """Models shipped inside the package, by name (``default``, ``causal``, ...), from ``registry.json``."""
    registry = models_root() / REGISTRY_FILE
    if not registry.is_file():
        return {}
    return {name: models_root() / name for name in json.loads(registry.read_text())}


def register_bundled_model(name: str, summary: str) -> None:
    """Record the checksum of ``assets/models/<name>/model.safetensors`` in the registry (for maintainers)."""
    registry_path = models_root() / REGISTRY_FILE
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {}
    registry[name] = {"sha256": file_sha256(models_root() / name / WEIGHTS_FILE), "summary": summary}
    registry_path.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")


def _verify_bundled(name: str) -> None:
    expected = json.loads((models_root() / REGISTRY_FILE).read_text())[name]["sha256"]
    weights = models_root() / name / WEIGHTS_FILE
    if not weights.is_file() or file_sha256(weights) != expected:
        raise ApolloError(f"bundled model {name!r} is missing or corrupt ({weights}); reinstall apollo-restore")




def save_model(model: Apollo, directory: str | os.PathLike, card: str | None = None,
               gate: GateConfig | None = None) -> Path:
    """Write ``model`` (and the ``gate`` its outputs go through, if any) as a native checkpoint folder, each file
    atomically; returns the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "model": model.config.to_dict()}
    if gate is not None:
        config["gate"] = gate.to_dict()
    config_json = json.dumps(config, indent=2)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata={"config": config_json}))
    atomic_write(directory / CONFIG_FILE, lambda tmp: Path(tmp).write_text(config_json + "\n"))
    if card is not None:
        atomic_write(directory / CARD_FILE, lambda tmp: Path(tmp).write_text(card))
    return directory


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _configs(config_json: dict) -> tuple[ApolloConfig, GateConfig | None]:
    """Model and gate configs of a native ``config.json``. Checkpoints from before the gate left the generator
    keep it as ``model.fill_below_db``: they load with every gate rule on, as they were trained."""
    model = dict(config_json["model"])
    legacy_below_db = model.pop("fill_below_db", None)
    if "gate" in config_json:
        gate = GateConfig.from_dict(config_json["gate"])
    else:
        gate = None if legacy_below_db is None else GateConfig(below_db=float(legacy_below_db))
    return ApolloConfig.from_dict(model), gate


def _load_native(weights: Path) -> tuple[ApolloConfig, dict[str, Tensor], GateConfig | None]:
    try:
        state = load_file(str(weights))
        with safe_open(str(weights), "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ApolloError(f"{weights}: not a readable safetensors file ({error})") from None
    config_path = weights.parent / CONFIG_FILE
    if "config" in metadata:
        config_json = json.loads(metadata["config"])
    elif config_path.is_file():
        config_json = json.loads(config_path.read_text())
    elif is_reference_state_dict(state):
        config = infer_config(state)
        return config, reference_to_native(state, config), None
    else:
        raise ApolloError(f"{weights}: no model config in the file's metadata nor a {CONFIG_FILE} beside it")
    config, gate = _configs(config_json)
    return config, state, gate


def _torch_load_safely(path: Path) -> object:
    """``torch.load`` with ``weights_only=True`` and only harmless extra globals allowed."""
    from torch.torch_version import TorchVersion

    allowed = [TorchVersion]
    try:
        if hasattr(torch.serialization, "safe_globals"):
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        torch.serialization.add_safe_globals(allowed)  # torch 2.4 has no context manager
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = found.group(1) if found else "a non-tensor object"
        raise ApolloError(
            f"{path}: refused to load: the file holds pickled code or objects outside the allow-list ({what}); "
            "tensors and plain containers only"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ApolloError(f"{path}: not a readable PyTorch checkpoint ({str(error).splitlines()[0]})") from None


def _generator_state(loaded: object, path: Path) -> dict[str, Tensor]:
    """Find the generator's tensors in a foreign file: bare, under ``state_dict``, or prefixed."""
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state:
        raise ApolloError(f"{path}: no state dict found")
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if is_reference_state_dict(tensors):
        return tensors
    for prefix in _GENERATOR_PREFIXES:
        inner = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if is_reference_state_dict(inner):
            return inner
    raise ApolloError(f"{path}: does not look like an Apollo checkpoint (no BN.*/output.* generator keys)")


def load_state(path: str | os.PathLike | None = None, sample_rate: int | None = None
               ) -> tuple[ApolloConfig, dict[str, Tensor], GateConfig | None]:
    """Resolve ``path`` (folder, .safetensors, foreign file, or a bundled model name; None = ``default``):
    the generator's config and tensors, and the gate config saved with it (None: no gate)."""
    bundled = bundled_models()
    name = "default" if path is None else str(path)
    if name in bundled and not Path(name).exists():
        _verify_bundled(name)
        path = bundled[name]
    elif path is None:
        raise ApolloError("no bundled default model is installed; pass --checkpoint PATH")
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise ApolloError(f"{path}: folder has no {WEIGHTS_FILE}")
        return _load_native(path / WEIGHTS_FILE)
    if not path.exists():
        known = ", ".join(sorted(bundled)) or "none"
        raise ApolloError(f"{path}: no such checkpoint (bundled models: {known})")
    if path.suffix == ".safetensors":
        return _load_native(path)
    state = _generator_state(_torch_load_safely(path), path)
    config = infer_config(state, sample_rate)
    return config, reference_to_native(state, config), None


def load_checkpoint(path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                    sample_rate: int | None = None) -> tuple[Apollo, Gate | None]:
    """A generator in eval mode on ``device`` (default CPU) and the gate its outputs go through (None: none).
    See :func:`load_state` for ``path``."""
    config, state, gate = load_state(path, sample_rate)
    model = Apollo(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ApolloError(f"{path}: weights do not fit the config ({str(error).splitlines()[0]})") from None
    return model.to(device or "cpu").eval(), None if gate is None else Gate(gate, config)


def load_model(path: str | os.PathLike | None = None, device: str | torch.device | None = None,
               sample_rate: int | None = None) -> Apollo:
    """The generator alone (see :func:`load_checkpoint`, which also gives the checkpoint's gate)."""
    return load_checkpoint(path, device, sample_rate)[0]
