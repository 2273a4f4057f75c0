"""Typed mapping between plain data (YAML / JSON) and nested dataclasses.

``from_mapping(cls, data)`` builds a dataclass from a dict, checking every key and value type against the
dataclass annotations; an unknown key or a wrong type is one :class:`ApolloError` line naming the key (as a
dotted path) and, for unknown keys, the valid ones. ``to_mapping`` is the inverse (tuples become lists,
paths strings), so a resolved config can be written back as YAML or JSON and read again.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from apollo_restore.errors import ApolloError

T = TypeVar("T")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists to tuples, dicts to dataclasses)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ApolloError(f"config key '{where}' may not be empty (null)")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except ApolloError as error:
                errors.append(str(error))
        raise ApolloError(errors[0] if len(errors) == 1 else f"config key '{where}': bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(c) for c in typing.get_args(tp))
            raise ApolloError(f"config key '{where}' must be one of {choices}, not {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ApolloError(f"config key '{where}' must be a list, not {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ApolloError(f"config key '{where}' must hold {len(args)} values, not {len(value)}")
            items = [_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))]
        else:
            item_type = args[0] if args else Any
            items = [_convert(item_type, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ApolloError(f"config key '{where}' must be a mapping, not {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApolloError(f"config key '{where}' must be a number, not {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApolloError(f"config key '{where}' must be an integer, not {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ApolloError(f"config key '{where}' must be true or false, not {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ApolloError(f"config key '{where}' must be a string, not {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ApolloError(f"config key '{where}' must be a path, not {value!r}")
        return Path(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ApolloError(f"config key '{where}' must be {_type_name(tp)}, not {value!r}")
    return value


def from_mapping(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a dict; missing keys keep their defaults. Raises ApolloError on bad input."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ApolloError(f"config section '{where or cls.__name__}' must be a mapping, not {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in data if key not in fields]
    if unknown:
        raise ApolloError(
            f"unknown config key '{_join(where, str(unknown[0]))}'; valid keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {key: _convert(hints.get(key, Any), value, _join(where, key)) for key, value in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ApolloError(f"missing config key '{_join(where, missing[0])}'")
    try:
        return cls(**values)
    except (ApolloError, ValueError, TypeError) as error:  # a dataclass's own __post_init__ checks
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ApolloError(f"config section '{where or cls.__name__}': {message}") from None


def to_mapping(obj: Any) -> Any:
    """Plain data (dicts, lists, numbers, strings) for a dataclass tree; inverse of :func:`from_mapping`."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_mapping(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_override(data: dict, assignment: str) -> None:
    """Apply ``"section.key=value"`` (value parsed as YAML) to the nested dict ``data`` in place."""
    import yaml

    if "=" not in assignment:
        raise ApolloError(f"override '{assignment}' must look like section.key=value")
    path, raw = assignment.split("=", 1)
    keys = path.strip().split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ApolloError(f"override '{assignment}': '{key}' is not a section")
    try:
        node[keys[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ApolloError(f"override '{assignment}': value is not valid YAML") from None
