"""`crossjepa probe`: load (or randomly initialise) a model, probe its encoder on a dataset's splits.

The protocol itself is `probe.probe_encoder`: per seed, C by k-fold CV on the TRAINING split only, accuracy on the
test split; sources without a test split (e.g. the ModelNet10 training split alone) get nested CV.
"""

from __future__ import annotations

import torch

from .probe import probe_encoder


def protocol(folds: int, seeds: int, has_test: bool, solver: str = "fast") -> str:
    return (f"linear SVM ({solver} solver), C by {folds}-fold CV on the train split only, "
            + ("test-split accuracy" if has_test else "nested CV accuracy (no test split)") + f", {seeds} seeds")


def probe_checkpoint(data: str, *, checkpoint=None, random_init: bool = False, preset: str = "default",
                     seeds: int = 3, folds: int = 5, num_points=None, device="auto", progress: bool = True,
                     solver: str = "fast") -> dict:
    """`crossjepa probe`: load (or randomly initialise) a model and probe it on `data`'s splits."""
    from ..data import open_dataset
    from ..models import build
    from ..train.checkpoint import load_pretrained
    from ..device import resolve_device

    dev = resolve_device(device)
    if checkpoint:
        model = load_pretrained(checkpoint, device=dev)
        source = str(checkpoint)
    elif random_init:
        torch.manual_seed(0)
        model = build(preset).to(dev)
        source = f"random-init ({preset})"
    else:
        raise ValueError("--checkpoint or --random-init: expected one of them")
    train_ds = open_dataset(data, split="train")
    test_ds = open_test_split(data)
    report = probe_encoder(model, train_ds, test_ds, seeds=tuple(range(seeds)), folds=folds,
                           num_points=num_points, progress=progress, solver=solver)
    report.update({"protocol": protocol(folds, seeds, test_ds is not None, solver), "encoder": source, "data": data,
                   "train_objects": len(train_ds), "test_objects": None if test_ds is None else len(test_ds),
                   "classes": getattr(train_ds, "classes", None)})
    return report


def probe_teacher_cache(data: str, cache: str, *, test_cache: str | None = None, seeds: int = 3,
                        folds: int = 5, solver: str = "fast", device="auto") -> dict:
    """`crossjepa probe --teacher-cache`: the teacher ceiling, the same protocol on the teacher's own
    view-averaged embeddings (`test_cache`: the test split's cache; without it, nested CV on train)."""
    from ..data import open_dataset
    from ..device import resolve_device
    from ..teacher import open_cache
    from .probe import probe_teacher
    from .splits import dataset_labels

    def opened(path, split):
        dataset, teacher_cache = open_dataset(data, split=split), open_cache(path)
        teacher_cache.check_dataset(dataset)
        return teacher_cache, dataset_labels(dataset)

    train_cache, train_y = opened(cache, "train")
    test = opened(test_cache, "test") if test_cache else (None, None)
    report = probe_teacher(train_cache, train_y, *test, seeds=tuple(range(seeds)), folds=folds, solver=solver,
                           device=resolve_device(device))
    report.update({"protocol": protocol(folds, seeds, test_cache is not None, solver), "encoder":
                   f"teacher {train_cache.meta['teacher']['name']} (view-averaged embeddings of {cache})",
                   "data": data, "train_objects": len(train_y)})
    return report


def open_test_split(data: str, num_points=None):
    """The test split when the source has one; None (-> nested CV) when it has none."""
    from ..data import SplitNotFound, open_dataset

    try:
        test = open_dataset(data, split="test", num_points=num_points)
    except SplitNotFound:
        return None
    return test if len(test) else None
