"""make_loader: the backend ("torch", "device" or "dali") chosen by name, its arguments checked once. The
backends and what they share are in loaders.py (and dali_loader.py, imported only when asked for)."""

from __future__ import annotations

import os
from typing import Optional

from ..validate import check_choice, check_int
from .loaders import BACKENDS, BatchPlan, DeviceLoader, Loader, TorchLoader
from .transforms import AugmentConfig


def make_loader(
    dataset,
    batch_size: int,
    backend: str = "torch",
    shuffle: bool = True,
    augment=False,
    num_points: int = 1024,
    seed: int = 0,
    drop_last: bool = False,
    device=None,
    *,
    num_workers: Optional[int] = None,
    rank: int = 0,
    world_size: int = 1,
    targets=None,
) -> Loader:
    """Batches of `dataset` (see loaders.py's module docstring for what every backend yields).

    augment: False, True (AugmentConfig defaults: rotation about the up axis + jitter) or an AugmentConfig.
    device: where batches live (torch: moved there after loading; device: where the dataset is resident,
    default CUDA when available; dali: a CUDA device runs the GPU pipeline, default CUDA when available).
    num_workers (torch backend): DataLoader workers, default min(4, CPUs).
    rank, world_size: this process's shard of every epoch (distributed training).
    targets: a targets.CachedTargets, whose teacher targets then come with every batch.
    """
    check_choice("backend", backend, BACKENDS)
    batch_size = check_int("batch_size", batch_size, 1)
    num_points = check_int("num_points", num_points, 1)
    seed = check_int("seed", seed, 0)
    world_size = check_int("world_size", world_size, 1)
    rank = check_int("rank", rank, 0, world_size - 1)
    if augment is True:
        augment = AugmentConfig()
    elif augment is False or augment is None:
        augment = None
    elif not isinstance(augment, AugmentConfig):
        raise TypeError(f"augment: expected a bool or an AugmentConfig, got {type(augment).__name__}")
    try:
        num_objects = len(dataset)
    except TypeError:
        raise TypeError(f"dataset: expected a sized dataset, got {type(dataset).__name__}") from None
    if num_objects == 0:
        raise ValueError("dataset: expected at least one object, got an empty dataset")
    plan = BatchPlan(num_objects, batch_size, bool(shuffle), seed, bool(drop_last), rank, world_size)
    if backend == "torch":
        workers = min(4, os.cpu_count() or 1) if num_workers is None else check_int("num_workers", num_workers, 0)
        return TorchLoader(dataset, plan, num_points, augment, seed, device, workers, targets)
    if backend == "device":
        loader = DeviceLoader(dataset, plan, num_points, augment, seed, device)
    else:
        from .dali_loader import DaliLoader

        loader = DaliLoader(dataset, plan, num_points, augment, seed, device)
    loader.targets = targets
    return loader
