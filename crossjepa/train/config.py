"""Pretraining configuration: one typed dataclass, loadable from YAML and overridable from the CLI.

Every field is checked when the dataclass is built (also after `--set` overrides, which rebuild it), so a bad
value is one ValueError naming the field, not a ZeroDivisionError a thousand steps later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .. import shared_settings as shared
from ..config_io import setting
from ..data.loaders import BACKENDS
from ..data.transforms import ROTATIONS
from ..models.config import PRESET_NAMES
from ..models.loss import LOSS_KINDS
from ..validate import check_bool, check_choice, check_device, check_int, check_number, check_str

NONFINITE = ("stop", "skip")


@dataclass
class OptimConfig:
    lr: float = setting(1e-3, "peak learning rate")
    weight_decay: float = setting(0.05, "AdamW weight decay (not of norms, biases and the cls token)")
    betas: tuple[float, float] = setting((0.9, 0.95), "AdamW betas")
    warmup_fraction: float = setting(0.05, "linear warmup, as a fraction of all steps; then cosine decay")
    min_lr_ratio: float = setting(0.01, "the cosine decays to this fraction of the peak learning rate")
    grad_clip: float = setting(1.0, "max global gradient norm; 0 turns clipping off")

    def __post_init__(self) -> None:
        check_number("optim.lr", self.lr, 0, lo_open=True)
        check_number("optim.weight_decay", self.weight_decay, 0)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise TypeError(f"optim.betas: expected two numbers in [0, 1), got {self.betas!r}")
        for beta in self.betas:
            check_number("optim.betas", beta, 0, 1, hi_open=True)
        check_number("optim.warmup_fraction", self.warmup_fraction, 0, 1)
        check_number("optim.min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_number("optim.grad_clip", self.grad_clip, 0)


@dataclass
class TrainConfig:
    """`crossjepa pretrain`: the point encoder learns to predict, from the points, the teacher's cached embedding
    of each rendered view (build the cache with `crossjepa cache` first)."""

    data: str = shared.data("synthetic:1000")
    cache: str = setting("", "teacher cache directory (crossjepa cache)", required=True)
    out: str = shared.out("directory (checkpoints, model.safetensors, metrics)", "runs/pretrain")
    preset: Literal[PRESET_NAMES] = setting("default", "model preset")
    model_overrides: list[str] = setting(
        factory=list,
        help="override a model config field, e.g. --model-set encoder.depth=4 (repeatable; --help-model lists them)",
        flags=("--model-set",),
        metavar="KEY=VALUE",
    )
    batch_size: int = setting(64, "objects per step, summed over all processes")
    views_per_object: int = setting(4, "views sampled per object per step from the cache", flags=("--views",))
    epochs: int = setting(100, "train for E passes over the data", one_of="steps")
    max_steps: Optional[int] = setting(None, "train for exactly N optimizer steps (overrides --epochs)", one_of="steps")
    num_points: Optional[int] = shared.model_points()
    augment: bool = setting(True, "rotation (--rotation) and jitter; the cameras turn with the points")
    rotation: Literal[ROTATIONS] = setting("up", "augmentation rotation: about the up axis (y), any, none")
    loader: Literal[BACKENDS] = setting("torch", "data loader backend")
    num_workers: Optional[int] = setting(None, "torch loader workers (default: min(4, CPUs))")
    loss: Literal[LOSS_KINDS] = setting("smooth_l1", "loss against the teacher embeddings")
    optim: OptimConfig = setting(factory=OptimConfig, help="optimizer: AdamW, warmup then cosine decay")
    checkpoint_every: int = setting(500, "write a checkpoint every K steps")
    log_every: int = setting(10, "log metrics every K steps")
    seed: int = setting(0, "seed of the model init, data order, augmentation and views")
    device: str = shared.device()
    amp: bool = setting(True, "bf16 autocast on CUDA; ignored on CPU")
    nonfinite: Literal[NONFINITE] = setting(
        "stop",
        "a step whose loss or gradient is NaN/Inf is never applied; stop: the run ends at the next log "
        "or checkpoint with one line naming the step and the last good checkpoint; skip: training goes on, "
        "and metrics.jsonl counts the skipped steps",
    )
    heldout_fraction: float = setting(
        0.05,
        "objects kept out of training (seeded); after every epoch the model's R^2 on their cached views "
        "goes to heldout.jsonl beside that of a constant predictor; 0 trains on everything",
    )
    unseen_fraction: float = setting(
        0.0,
        "keep a stratified (by label), seeded fraction F of the objects out of pretraining (out of its "
        "batches and the held-out R^2), listed in OUT/unseen_objects.json for `probe --unseen`; 0 pretrains on "
        "everything",
        metavar="F",
    )
    unseen_seed: int = setting(
        0, "seed of that carve, apart from --seed, so runs with other seeds keep the same unseen objects", metavar="S"
    )

    def __post_init__(self) -> None:
        check_str("data", self.data)
        check_str("cache", self.cache, allow_empty=True)  # filled in by the CLI; pretrain() opens it
        check_str("out", self.out)
        check_choice("preset", self.preset, PRESET_NAMES)
        if not isinstance(self.model_overrides, list) or not all(
            isinstance(o, str) and "=" in o for o in self.model_overrides
        ):
            raise TypeError(f"model_overrides: expected a list of KEY=VALUE strings, got {self.model_overrides!r}")
        for name in ("batch_size", "views_per_object", "epochs", "checkpoint_every", "log_every"):
            check_int(name, getattr(self, name), 1)
        check_int("max_steps", self.max_steps, 1, optional=True)
        check_int("num_points", self.num_points, 1, optional=True)
        check_int("num_workers", self.num_workers, 0, optional=True)
        check_int("seed", self.seed, 0)
        check_int("unseen_seed", self.unseen_seed, 0)
        check_bool("augment", self.augment)
        check_choice("rotation", self.rotation, ROTATIONS)
        check_bool("amp", self.amp)
        check_choice("loader", self.loader, BACKENDS)
        check_choice("loss", self.loss, LOSS_KINDS)
        check_choice("nonfinite", self.nonfinite, NONFINITE)
        check_number("heldout_fraction", self.heldout_fraction, 0, 0.5, hi_open=True)
        check_number("unseen_fraction", self.unseen_fraction, 0, 0.5, hi_open=True)
        if not isinstance(self.optim, OptimConfig):
            raise TypeError(f"optim: expected an OptimConfig, got {type(self.optim).__name__}")
        check_device("device", self.device)
