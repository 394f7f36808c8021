"""Command-line flags made from a config dataclass, so that a setting is written once: its field (type,
default, and help through config_io.setting) is its flag.

Every leaf field gets a flag, `--field-name` unless the field names its own `flags` (or is `positional`); the
fields of a nested config (``optim``) form a group of their own in `--help`. A flag's value is the field's type:
an int, a float, a string, one of a Literal's values, N numbers for a tuple; a bool's flag is --x when the field
is off by default, --x/--no-x when it is on; a list field's flag is repeatable and adds to the list. What the flags give
is applied as `--set KEY=VALUE` overrides are (config_io.override), so it is checked the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any, Iterator

from .config_io import apply_overrides, load_yaml

# argparse dest of a config flag: this prefix, then the field's dotted key ("config+:" for a list field's flag,
# whose values are added to the list)
_SET, _ADD = "config:", "config+:"


class _Leaf(typing.NamedTuple):
    key: str  # dotted: "optim.lr"
    owner: type  # the dataclass that declares the field
    field: dataclasses.Field
    annotation: Any
    default: Any
    sections: tuple  # (dotted key, owner, field) of each enclosing config field, outermost first


def _leaves(config: Any, prefix: str = "", sections: tuple = ()) -> Iterator[_Leaf]:
    """Every leaf field of `config` (an instance), depth first."""
    owner = type(config)
    hints = typing.get_type_hints(owner)
    for f in dataclasses.fields(config):
        key, value = prefix + f.name, getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, key + ".", sections + ((key, owner, f),))
        else:
            yield _Leaf(key, owner, f, hints[f.name], value, sections)


def _help(owner: type, field: dataclasses.Field) -> str:
    """The field's help; a subclass that only changes a default keeps the help of the class it extends."""
    for cls in owner.__mro__:
        if dataclasses.is_dataclass(cls):
            inherited = {f.name: f for f in dataclasses.fields(cls)}.get(field.name)
            if inherited is not None and inherited.metadata.get("help"):
                return inherited.metadata["help"]
    return ""


def _value_kwargs(annotation: Any, metavar: str, default: Any) -> dict:
    """argparse keywords that parse a value of `annotation`."""
    args = typing.get_args(annotation)
    if type(None) in args:  # Optional[X]: the flag gives an X (None stays reachable through --set)
        return _value_kwargs(next(a for a in args if a is not type(None)), metavar, default)
    origin = typing.get_origin(annotation)
    if annotation is bool:  # --x turns on what is off by default; --x/--no-x for what is on
        return {"action": argparse.BooleanOptionalAction} if default else {"action": "store_const", "const": True}
    if origin is typing.Literal:
        return {"choices": list(args), "type": type(args[0])}
    if origin is tuple:
        return {"nargs": len(args), "type": args[0], "metavar": metavar}
    if origin is list:
        return {"action": "append", "type": args[0], "metavar": metavar}
    if annotation in (int, float, str):
        return {"type": annotation, "metavar": metavar}
    raise TypeError(f"{metavar.lower()}: no command-line flag for a field of type {annotation!r}")


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default_text(value: Any) -> str:
    if value is None or value is False or value in ("", []):
        return ""
    if value is True:
        return " (default: on)"
    return f" (default: {' '.join(map(_shown, value)) if isinstance(value, tuple) else _shown(value)})"


def add_config_flags(parser: argparse.ArgumentParser, config: Any) -> None:
    """A flag for every leaf field of `config` (an instance: its values are the defaults shown in --help)."""
    groups: dict[str, Any] = {}
    exclusive: dict[str, Any] = {}
    for leaf in _leaves(config):
        meta, group = leaf.field.metadata, parser
        for key, owner, section in leaf.sections:
            if key not in groups:
                groups[key] = parser.add_argument_group(f"{_help(owner, section) or key} ({key}.*)")
            group = groups[key]
        if meta.get("one_of"):
            if meta["one_of"] not in exclusive:
                exclusive[meta["one_of"]] = group.add_mutually_exclusive_group(required=bool(meta.get("required")))
            group = exclusive[meta["one_of"]]
        name = leaf.field.name
        helptext = _help(leaf.owner, leaf.field) + ("" if meta.get("required") else _default_text(leaf.default))
        prefix = _ADD if typing.get_origin(leaf.annotation) is list else _SET
        kwargs = _value_kwargs(leaf.annotation, meta.get("metavar", name.upper()), leaf.default)
        if meta.get("positional"):  # `crossjepa pack SRC OUT`: the argument's name is its dest
            group.add_argument(prefix + leaf.key, help=helptext.replace("%", "%%"), **kwargs)
            continue
        group.add_argument(
            *meta.get("flags", ("--" + name.replace("_", "-"),)),
            dest=prefix + leaf.key,
            required=bool(meta.get("required")) and not meta.get("one_of"),
            help=helptext.replace("%", "%%"),
            **kwargs,
        )


def _get(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part)
    return config


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """`cls` from --config (YAML, if the command has it), then the config flags given, then the --set
    overrides in order, then what list flags add (to the list as it then is)."""
    config = load_yaml(cls, args.config) if getattr(args, "config", None) else cls()
    given = {k: v for k, v in vars(args).items() if v is not None}
    flags = [f"{k[len(_SET) :]}={json.dumps(v)}" for k, v in given.items() if k.startswith(_SET)]
    config = apply_overrides(config, flags + list(getattr(args, "set", [])))
    added = [(k[len(_ADD) :], v) for k, v in given.items() if k.startswith(_ADD)]
    if added:
        config = apply_overrides(config, [f"{k}={json.dumps(_get(config, k) + v)}" for k, v in added])
    return config


def describe_fields(configs: dict[str, Any]) -> str:
    """One line per leaf field of the config instances `configs` (one dataclass, several variants, e.g. the model
    presets): its dotted key, its value in each, and its help."""
    columns = [{leaf.key: leaf for leaf in _leaves(config)} for config in configs.values()]
    first = columns[0]
    values = {key: " / ".join(_shown(column[key].default) for column in columns) for key in first}
    key_width, value_width = max(map(len, first)), max(map(len, values.values()))
    return "\n".join(
        f"  {key:<{key_width}}  {values[key]:<{value_width}}  {_help(leaf.owner, leaf.field)}"
        for key, leaf in first.items()
    )
