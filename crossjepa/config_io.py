"""Typed dataclass configs: load from YAML, override (dotted keys, or `key=value` strings), dump back to YAML."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from .validate import check_choice

T = TypeVar("T")


def setting(
    default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING, **cli: Any
) -> Any:
    """A config field with its documentation: `help` is the field's help, shown by the CLI flag that
    config_flags.py makes for it. `cli` may name `flags` (the option strings, default --field-name),
    `positional` (an argument without a flag), `metavar`, `required` (on the command line) and `one_of` (flags
    sharing a name exclude each other)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help, **cli})


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the field's declared type, or raise naming the field."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping of fields, got {value!r}")
        return from_dict(annotation, value, prefix=where)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is typing.Literal:
        return check_choice(where, value, args)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [
            _coerce(v, item_type, where) if item_type is not Any and item_type is not Ellipsis else v for v in value
        ]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return annotation(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass `cls` from a (possibly partial) mapping; unknown keys are an error."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ValueError(f"unknown config key {where}{sorted(unknown)[0]} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def override(config: T, updates: Mapping[str, Any]) -> T:
    """A copy of `config` with `updates` applied, checked as a config file is (`from_dict`). A key is a field
    name, dotted for nested ones ("encoder.depth"); a section may also take a dict of its fields (merged) or a
    whole sub-config. The one override path: `apply_overrides` (CLI `--set`) and the model presets use it."""
    data = to_dict(config)
    for key, value in updates.items():
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {key!r}: {part!r} is not a config section")
            node = node[part]
        leaf = parts[-1]
        if leaf not in node:
            raise ValueError(f"override {key!r}: unknown key {leaf!r} (known: {', '.join(sorted(node))})")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value)
        elif isinstance(value, dict) and isinstance(node[leaf], dict):
            value = {**node[leaf], **value}
        node[leaf] = value
    return from_dict(type(config), data)


def apply_overrides(config: T, overrides: list[str]) -> T:
    """`override` with `a.b.c=value` strings (values parsed as YAML scalars), applied in order."""
    updates: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected KEY=VALUE, e.g. encoder.depth=4")
        key, raw = item.split("=", 1)
        updates.pop(key.strip(), None)  # a repeated key counts where it was given last
        updates[key.strip()] = yaml.safe_load(raw)
    return override(config, updates)


def load_yaml(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path}: not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a YAML mapping at the top level")
    return from_dict(cls, data)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
