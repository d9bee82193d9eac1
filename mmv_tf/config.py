"""Typed dataclass configs with YAML files and `a.b=value` overrides.

Configs are frozen dataclasses whose fields are primitives, tuples, Optional
values or nested config dataclasses. `from_dict` rejects unknown keys, wrong
types and values outside a field's `bounded` range with the dotted path of the
bad field, so a typo in a YAML file or a `--set` override fails before any work
starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mmv_tf.errors import InputError

C = TypeVar("C")


class ConfigError(InputError):
    """A config field is unknown or has a value of the wrong type."""


def bounded(default: Any, *, least: float | None = None, above: float | None = None,
            most: float | None = None, min_items: int | None = None) -> Any:
    """A dataclass field whose values must be >= `least`, > `above`, <= `most`, or (a tuple)
    hold at least `min_items` items; None passes where the field is optional."""
    limits = {"least": least, "above": above, "most": most, "min_items": min_items}
    return dataclasses.field(default=default, metadata={k: v for k, v in limits.items() if v is not None})


def _check_bounds(value: Any, limits: typing.Mapping[str, Any], path: str) -> None:
    if value is None:
        return
    if "min_items" in limits and len(value) < limits["min_items"]:
        raise ConfigError(f"{path}: needs at least {limits['min_items']} item(s), got {len(value)}")
    if "least" in limits and value < limits["least"]:
        raise ConfigError(f"{path}: must be at least {limits['least']}, got {value!r}")
    if "above" in limits and value <= limits["above"]:
        raise ConfigError(f"{path}: must be greater than {limits['above']}, got {value!r}")
    if "most" in limits and value > limits["most"]:
        raise ConfigError(f"{path}: must be at most {limits['most']}, got {value!r}")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) for YAML and JSON."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError("; ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(hint, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{path}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: expected {hint.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported field type {hint!r}")


def from_dict(cls: type[C], data: dict[str, Any], path: str = "") -> C:
    """Build the dataclass `cls` from a nested dict, checking names and types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]} (known: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        where = f"{path}.{name}" if path else name
        kwargs[name] = _coerce(value, hints[name], where)
        _check_bounds(kwargs[name], fields[name].metadata, where)
    return cls(**kwargs)


def deep_update(base: dict, new: dict) -> dict:
    """A copy of nested dict `base` with `new`'s values, merged mapping by mapping."""
    out = dict(base)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def merge(config: C, updates: dict[str, Any]) -> C:
    """A copy of `config` with the nested `updates` applied and type-checked."""
    return from_dict(type(config), deep_update(to_dict(config), updates))


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["train.steps=1000", "head.design=shared"]` -> nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: the value is not valid YAML "
                              f"({_one_line(error)})") from None
    return nested


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file in any error."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"cannot read config {path}: it is not UTF-8 text (byte "
                          f"{error.object[error.start]:#x} at offset {error.start})") from None
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read config {path}: {_one_line(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level")
    return data
