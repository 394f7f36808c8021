"""Pretraining configuration: one typed dataclass, loadable from YAML and overridable from the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_fraction: float = 0.05  # of all steps, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0


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
    augment: bool = True
    loader: Literal["torch", "device", "dali"] = "torch"
    num_workers: Optional[int] = None  # torch loader workers; None -> min(4, CPUs)
    loss: Literal["smooth_l1", "mse", "cosine"] = "smooth_l1"
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  # "auto" -> cuda when available
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
