"""Typed mapping between plain data (YAML / JSON) and nested dataclasses.

``from_mapping(cls, data)`` builds a dataclass from a dict, checking every key and value type against the
dataclass annotations; an unknown key or a wrong type is one :class:`ApolloError` line naming the key (as a
dotted path) and, for unknown keys, the valid ones. ``to_mapping`` is the inverse (tuples become lists,
paths strings), so a resolved config can be written back as YAML or JSON and read again.

One small function per kind of annotation (dataclass, union, literal, sequence, plain type). No library: the
configs are plain dataclasses shared with inference (``ApolloConfig``, ``GateConfig``), so pydantic models or
OmegaConf structured configs would mean a second class tree or a heavy dependency of the core package, and
dacite's errors name neither the dotted key nor the valid keys; the rules here are ~100 lines of the stdlib.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from apollo_restore.errors import ApolloError

T = TypeVar("T")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _bad(where: str, expected: str, value: Any) -> ApolloError:
    return ApolloError(f"config key '{where}' must be {expected}, not {value!r}")


#: plain types: (accepts the value, what the message says it must be, conversion)
_PLAIN: dict[Any, tuple[Callable[[Any], bool], str, Callable[[Any], Any]]] = {
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", float),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", int),
    bool: (lambda v: isinstance(v, bool), "true or false", bool),
    str: (lambda v: isinstance(v, str), "a string", str),
    Path: (lambda v: isinstance(v, (str, Path)), "a path", Path),
    dict: (lambda v: isinstance(v, dict), "a mapping", dict),
}


def _convert_union(tp: Any, value: Any, where: str) -> Any:
    """``X | None`` and other unions: null where allowed, else the first option the value fits."""
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


def _convert_literal(tp: Any, value: Any, where: str) -> Any:
    if value not in typing.get_args(tp):
        choices = ", ".join(repr(c) for c in typing.get_args(tp))
        raise ApolloError(f"config key '{where}' must be one of {choices}, not {value!r}")
    return value


def _convert_sequence(tp: Any, value: Any, where: str) -> list | tuple:
    """``list[X]``, ``tuple[X, ...]`` and fixed ``tuple[X, Y]``: each item checked, tuples stay tuples."""
    if not isinstance(value, (list, tuple)):
        raise _bad(where, "a list", value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ApolloError(f"config key '{where}' must hold {len(args)} values, not {len(value)}")
        item_types = args
    else:
        item_types = (args[0] if args else Any,) * len(value)
    items = [_convert(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(item_types, value, strict=True))]
    return tuple(items) if origin is tuple else items


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists to tuples, dicts to dataclasses)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, value, where)
    if origin is typing.Literal:
        return _convert_literal(tp, value, where)
    if origin in (tuple, list):
        return _convert_sequence(tp, value, where)
    plain = _PLAIN.get(origin or tp)
    if plain is not None:
        accepts, expected, convert = plain
        if not accepts(value):
            raise _bad(where, expected, value)
        return convert(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise _bad(where, _type_name(tp), value)
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
