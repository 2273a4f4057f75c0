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
import warnings
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from apollo_restore.errors import ApolloError
from apollo_restore.files import atomic_write, atomic_write_text, missing_input
from apollo_restore.gate import Gate, GateConfig
from apollo_restore.model import Apollo, ApolloConfig
from apollo_restore.model.apollo import expected_state_shapes
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


def register_bundled_model(name: str, summary: str, root: str | os.PathLike | None = None) -> None:
    """Record the checksum of ``<root>/<name>/model.safetensors`` in ``<root>/registry.json`` (root: the bundled
    models' folder; see `train.ship`)."""
    root = Path(root) if root is not None else models_root()
    registry_path = root / REGISTRY_FILE
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {}
    registry[name] = {"sha256": file_sha256(root / name / WEIGHTS_FILE), "summary": summary}
    atomic_write_text(registry_path, json.dumps(registry, indent=2, sort_keys=True) + "\n")


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
    """sha256 of a file, or of a folder's files (recursively, in name order) one after the other.

    A model folder's card (``README.md``) is left out: it describes the model, so editing it changes no output
    (an evaluation's restored files stay valid)."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file() and not (path.is_dir() and file.name == CARD_FILE):
            with file.open("rb") as handle:
                for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


#: how many offending keys an error names before it counts the rest
SHOWN_KEYS = 3
#: file signatures of audio formats (a common wrong file to give ``--checkpoint``)
_AUDIO_MAGIC = (b"RIFF", b"fLaC", b"OggS", b"ID3", b"FORM", b"\xff\xfb", b"\xff\xf3", b"\xff\xfa")


def _listed(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_KEYS])
    more = f" and {len(items) - SHOWN_KEYS} more" if len(items) > SHOWN_KEYS else ""
    return f"{len(items)} {what} ({shown}{more})"


def check_state_fits(config: ApolloConfig, shapes: dict[str, tuple[int, ...]], where: str | os.PathLike) -> None:
    """Refuse weights whose keys or shapes are not those of ``config``'s generator; the error names a few
    missing, unexpected and mis-shaped keys and counts the rest. Nothing is allocated."""
    expected = expected_state_shapes(config)
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    misshaped = [f"{k} {list(shapes[k])} where the config needs {list(expected[k])}"
                 for k in expected if k in shapes and tuple(shapes[k]) != expected[k]]
    problems = [_listed(what, keys) for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped tensors", misshaped)) if keys]
    if problems:
        raise ApolloError(f"{where}: weights do not fit the model config: " + "; ".join(problems))


def check_values(state: dict[str, Tensor], where: str | os.PathLike) -> None:
    """Refuse weights that are not floating point or hold Inf/NaN (they would turn every output into NaN)."""
    for kind, test in (("not floating point", lambda t: not t.is_floating_point()),
                       ("Inf or NaN values", lambda t: not bool(torch.isfinite(t).all()))):
        bad = [k for k, t in state.items() if test(t)]
        if bad:
            first = state[bad[0]]
            detail = (f"dtype {first.dtype}" if kind.startswith("not")
                      else f"{int((~torch.isfinite(first)).sum())} of {first.numel()} values")
            raise ApolloError(f"{where}: corrupt weights: {_listed('tensors with ' + kind, bad)}; "
                              f"{bad[0]} has {detail}")


def _check_storage(tensors: dict[str, Tensor], where: Path) -> None:
    """Refuse tensors that claim more elements than their file stores (stride 0 / expanded views): copying
    one would allocate its full shape, which a few KB of file can make tens of GiB."""
    for key, tensor in tensors.items():
        claimed = tensor.numel() * tensor.element_size()
        if claimed > tensor.untyped_storage().nbytes():
            raise ApolloError(f"{where}: tensor {key} claims shape {list(tensor.shape)} ({claimed:,} bytes) but the "
                              f"file stores {tensor.untyped_storage().nbytes():,} bytes for it (an expanded or "
                              "stride-0 tensor); refusing it")


def _file_kind(path: Path) -> str:
    """``safetensors``, ``torch`` (zip or pickle) or a reason the file is not a checkpoint, from its first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise ApolloError(f"{path}: cannot read ({error.strerror})") from None
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return "torch"
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 30:
        return "safetensors"
    if not head:
        return "an empty file"
    if head.startswith(_AUDIO_MAGIC):
        return "an audio file"
    return "neither safetensors nor a PyTorch file"


def _parse_config(text: str, where: str) -> tuple[ApolloConfig, GateConfig | None]:
    """Model and gate configs in a native checkpoint's JSON (``{"format": ..., "model": {...}, "gate": {...}}``).
    Checkpoints from before the gate left the generator keep it as ``model.fill_below_db``: they load with every
    gate rule on, as they were trained."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ApolloError(f"{where}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ApolloError(f"{where}: expected a JSON object with a \"model\" mapping (the model config)")
    if data.get("format", FORMAT) != FORMAT:
        raise ApolloError(f"{where}: format {data['format']!r} is not {FORMAT!r}, the one this version reads")
    model = dict(data["model"])
    legacy_below_db = model.pop("fill_below_db", None)
    try:
        if "gate" in data:
            gate = GateConfig.from_dict(data["gate"])
        else:
            gate = None if legacy_below_db is None else GateConfig(below_db=legacy_below_db)
        return ApolloConfig.from_dict(model), gate
    except ApolloError as error:
        raise ApolloError(f"{where}: {error}") from None


def _load_native(weights: Path) -> tuple[ApolloConfig, dict[str, Tensor], GateConfig | None]:
    """A safetensors file: config from its metadata or a config.json beside it, checked against the tensor
    shapes in the header before any tensor is read."""
    try:
        with safe_open(str(weights), "pt") as handle:
            metadata = handle.metadata() or {}
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ApolloError(f"{weights}: not a readable safetensors file ({error})") from None
    config_path = weights.parent / CONFIG_FILE
    if "config" in metadata:
        config, gate = _parse_config(metadata["config"], f"{weights} (metadata \"config\")")
    elif config_path.is_file():
        try:
            text = config_path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise ApolloError(f"{config_path}: cannot read ({error})") from None
        config, gate = _parse_config(text, str(config_path))
    elif is_reference_state_dict(shapes):
        return *_from_reference(_read_safetensors(weights), weights), None
    else:
        raise ApolloError(f"{weights}: no model config in the file's metadata nor a {CONFIG_FILE} beside it")
    check_state_fits(config, shapes, weights)
    state = _read_safetensors(weights)
    check_values(state, weights)
    return config, state, gate


def _read_safetensors(weights: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise ApolloError(f"{weights}: not a readable safetensors file ({error})") from None


def _from_reference(state: dict[str, Tensor], path: Path, sample_rate: int | None = None
                    ) -> tuple[ApolloConfig, dict[str, Tensor]]:
    """Config read off a reference-layout state dict, and the state in our layout, both checked."""
    check_values(state, path)
    try:
        config = infer_config(state, sample_rate)
        native = reference_to_native(state, config)
    except (KeyError, IndexError, RuntimeError, ValueError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ApolloError(f"{path}: tensors are not laid out like an Apollo generator ({reason})") from None
    except ApolloError as error:
        raise ApolloError(f"{path}: {error}") from None
    check_state_fits(config, {k: tuple(v.shape) for k, v in native.items()}, path)
    return config, native


def _torch_load_safely(path: Path) -> object:
    """``torch.load`` with ``weights_only=True`` and only harmless extra globals allowed."""
    from torch.torch_version import TorchVersion

    allowed = [TorchVersion]
    try:  # from an open file: torch.load would pick its format from the name (".safetensors"), we sniffed it
        with open(path, "rb") as handle, warnings.catch_warnings():  # warnings ("pickle protocol 4") add nothing
            warnings.simplefilter("ignore")
            if hasattr(torch.serialization, "safe_globals"):
                with torch.serialization.safe_globals(allowed):
                    return torch.load(handle, map_location="cpu", weights_only=True)
            torch.serialization.add_safe_globals(allowed)  # torch 2.4 has no context manager
            return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found:
            raise ApolloError(
                f"{path}: refused to load: the file holds pickled code or objects outside the allow-list "
                f"({found.group(1)}); tensors and plain containers only"
            ) from None
        unsupported = re.search(r"Unsupported [^\n]*", str(error))
        reason = unsupported.group(0) if unsupported else "pickle data this safe loader does not read"
        raise ApolloError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    except Exception as error:  # a corrupt file makes the unpickler fail in many ways (EOF, IndexError, ...)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ApolloError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated: {reason})") from None


def _generator_state(loaded: object, path: Path) -> dict[str, Tensor]:
    """Find the generator's tensors in a foreign file: bare, under ``state_dict``, or prefixed."""
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state:
        raise ApolloError(f"{path}: no state dict found")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, Tensor)}
    _check_storage(tensors, path)
    if is_reference_state_dict(tensors):
        return tensors
    for prefix in _GENERATOR_PREFIXES:
        inner = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if is_reference_state_dict(inner):
            return inner
    raise ApolloError(f"{path}: does not look like an Apollo checkpoint (no BN.*/output.* generator keys)")


def _is_bare_name(path: str) -> bool:
    """``default`` (a bundled model's name) rather than ``./default``, ``models/default`` or ``/abs/default``."""
    return not (os.sep in path or "/" in path or path.startswith((".", "~")) or os.path.isabs(path))


def resolve_checkpoint(path: str | os.PathLike | None = None) -> Path:
    """Where ``path`` points: a bundled model's folder for a bare name that is one (``default``, ``causal``;
    bundled names win over a folder of that name in the current directory, which ``./default`` picks), else
    the file or folder itself. None means ``default``."""
    bundled = bundled_models()
    if path is None:
        if "default" not in bundled:
            raise ApolloError("no bundled default model is installed; pass --checkpoint PATH")
        path = "default"
    if isinstance(path, str) and _is_bare_name(path) and path in bundled:
        _verify_bundled(path)
        return bundled[path]
    path = Path(path)
    if not os.path.lexists(path):
        known = ", ".join(sorted(bundled)) or "none"
        raise ApolloError(f"{path}: no such checkpoint (bundled models: {known})")
    if (problem := missing_input(path)) is not None:
        raise problem
    return path


def load_state(path: str | os.PathLike | None = None, sample_rate: int | None = None
               ) -> tuple[ApolloConfig, dict[str, Tensor], GateConfig | None]:
    """The generator's config and tensors (both checked) and the gate config saved with it (None: no gate), from
    a folder, .safetensors, foreign file, or a bundled model name (None = ``default``; see
    :func:`resolve_checkpoint`). No pickled code runs; every failure is one ApolloError line."""
    path = resolve_checkpoint(path)
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            hint = f"; for the bundled model write --checkpoint {path.name}" if path.name in bundled_models() else ""
            raise ApolloError(f"{path}: folder has no {WEIGHTS_FILE} (not a native checkpoint folder){hint}")
        path = path / WEIGHTS_FILE
    kind = _file_kind(path)
    if kind == "safetensors":
        return _load_native(path)
    if kind != "torch":
        raise ApolloError(f"{path}: not a checkpoint ({kind}); give a model folder, a .safetensors file or a "
                          "reference .bin/.ckpt/.pt/.pth")
    return *_from_reference(_generator_state(_torch_load_safely(path), path), path, sample_rate), None


def load_checkpoint(path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                    sample_rate: int | None = None) -> tuple[Apollo, Gate | None]:
    """A generator in eval mode on ``device`` (default CPU) and the gate its outputs go through (None: none).
    See :func:`load_state` for ``path``."""
    config, state, gate = load_state(path, sample_rate)
    model = Apollo(config)
    model.load_state_dict(state)  # keys and shapes are checked by load_state
    return model.to(device or "cpu").eval(), None if gate is None else Gate(gate, config)


def load_model(path: str | os.PathLike | None = None, device: str | torch.device | None = None,
               sample_rate: int | None = None) -> Apollo:
    """The generator alone (see :func:`load_checkpoint`, which also gives the checkpoint's gate)."""
    return load_checkpoint(path, device, sample_rate)[0]
