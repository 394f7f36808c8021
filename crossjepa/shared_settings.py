"""The settings several commands share, each defined once with its help. A command's config dataclass declares
them with these functions; config_flags.py turns them into --data, --device, --num-points and --out. (--quiet and
--debug belong to the crossjepa command itself, cli.py.)"""

from __future__ import annotations

from typing import Any

from .config_io import setting

DATA_HELP = "dataset spec: a path or synthetic:N"
DEVICE_HELP = "auto | cpu | cuda | cuda:N (auto: cuda when available)"
MODEL_POINTS_HELP = "points per cloud fed to the encoder (default: the model's)"


def data(default: str = "", **cli: Any) -> Any:
    return setting(default, DATA_HELP, required=True, **cli)


def device() -> Any:
    return setting("auto", DEVICE_HELP)


def model_points() -> Any:
    """--num-points of the commands that feed an encoder: default the model's own."""
    return setting(None, MODEL_POINTS_HELP)


def stored_points(what: str, default: int = 2048) -> Any:
    """--num-points of the commands that read clouds for another use (render, cache, pack)."""
    return setting(default, f"points per object {what}")


def out(what: str, default: str = "", required: bool = True, **cli: Any) -> Any:
    return setting(default, f"output {what}", required=required, **cli)
