"""Pretraining configuration: one typed dataclass, loadable from YAML and overridable from the CLI.

Every field is checked when the dataclass is built (also after `--set` overrides, which rebuild it), so a bad
value is one ValueError naming the field, not a ZeroDivisionError a thousand steps later.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal, Optional

LOADERS = ("torch", "device", "dali")
LOSSES = ("smooth_l1", "mse", "cosine")
NONFINITE = ("stop", "skip")
ROTATIONS = ("up", "so3", "none")


def _int(name: str, value, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name}: expected {what}{' or None' if optional else ''}, got {value!r}")


def _float(name: str, value, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")


def _choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def _bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")


def _str(name: str, value, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or not (value or allow_empty):
        raise ValueError(f"{name}: expected a {'' if allow_empty else 'non-empty '}string, got {value!r}")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_fraction: float = 0.05  # of all steps, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off

    def __post_init__(self) -> None:
        _float("optim.lr", self.lr, 0.0, math.inf, low_open=True, high_open=True)
        _float("optim.weight_decay", self.weight_decay, 0.0, math.inf, high_open=True)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"optim.betas: expected two numbers in [0, 1), got {self.betas!r}")
        for beta in self.betas:
            _float("optim.betas", beta, 0.0, 1.0, high_open=True)
        _float("optim.warmup_fraction", self.warmup_fraction, 0.0, 1.0)
        _float("optim.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _float("optim.grad_clip", self.grad_clip, 0.0, math.inf, high_open=True)


@dataclass
class TrainConfig:
    data: str = "synthetic:1000"
    cache: str = ""
    out: str = "runs/pretrain"
    preset: str = "default"
    model_overrides: list[str] = field(default_factory=list)  # "encoder.depth=4" style
    batch_size: int = 64  # objects per step, summed over all processes
    views_per_object: int = 4  # views sampled per object per step from the cache
    epochs: int = 100
    max_steps: Optional[int] = None  # overrides epochs when set
    num_points: Optional[int] = None  # points per cloud fed to the model; None -> the model's tokenizer setting
    augment: bool = True  # rotation (below) and jitter; the cameras turn with the points
    rotation: Literal["up", "so3", "none"] = "up"  # augmentation rotation: about the up axis (y), any, none
    loader: Literal["torch", "device", "dali"] = "torch"
    num_workers: Optional[int] = None  # torch loader workers; None -> min(4, CPUs)
    loss: Literal["smooth_l1", "mse", "cosine"] = "smooth_l1"
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  # "auto" -> cuda when available
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    # A step whose loss or gradient is NaN/Inf is never applied. "stop": the run ends at the next log or
    # checkpoint with one line naming the step and the last good checkpoint. "skip": training goes on, and
    # metrics.jsonl counts the skipped steps.
    nonfinite: Literal["stop", "skip"] = "stop"
    # Objects kept out of training (seeded); after every epoch the model's R^2 on their cached views goes to
    # heldout.jsonl beside that of a constant predictor. 0 trains on everything.
    heldout_fraction: float = 0.05
    # A stratified (by label), seeded fraction of the objects that pretraining never sees (not in its batches,
    # not in the held-out R^2), listed in OUT/unseen_objects.json for `crossjepa probe --unseen`: an accuracy on
    # objects the encoder never met, for data without a test split. 0 (the default) pretrains on everything:
    # a final encoder should use all the data, and a test split already gives such a number.
    unseen_fraction: float = 0.0
    unseen_seed: int = 0  # the carve's seed, apart from `seed`: runs with other seeds keep the same unseen objects

    def __post_init__(self) -> None:
        from ..models.config import PRESETS

        _str("data", self.data)
        _str("cache", self.cache, allow_empty=True)  # filled in by the CLI; pretrain() opens it
        _str("out", self.out)
        _choice("preset", self.preset, tuple(PRESETS))
        if not isinstance(self.model_overrides, list) or not all(
                isinstance(o, str) and "=" in o for o in self.model_overrides):
            raise ValueError(f"model_overrides: expected a list of KEY=VALUE strings, got {self.model_overrides!r}")
        for name in ("batch_size", "views_per_object", "epochs", "checkpoint_every", "log_every"):
            _int(name, getattr(self, name), 1)
        _int("max_steps", self.max_steps, 1, optional=True)
        _int("num_points", self.num_points, 1, optional=True)
        _int("num_workers", self.num_workers, 0, optional=True)
        _int("seed", self.seed, 0)
        _int("unseen_seed", self.unseen_seed, 0)
        _bool("augment", self.augment)
        _choice("rotation", self.rotation, ROTATIONS)
        _bool("amp", self.amp)
        _choice("loader", self.loader, LOADERS)
        _choice("loss", self.loss, LOSSES)
        _choice("nonfinite", self.nonfinite, NONFINITE)
        _float("heldout_fraction", self.heldout_fraction, 0.0, 0.5, high_open=True)
        _float("unseen_fraction", self.unseen_fraction, 0.0, 0.5, high_open=True)
        if not isinstance(self.optim, OptimConfig):
            raise ValueError(f"optim: expected an OptimConfig, got {type(self.optim).__name__}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
