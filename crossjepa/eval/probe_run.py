"""`crossjepa probe`: load (or randomly initialise) a model, probe its encoder on a dataset's splits.

The protocol itself is `probe.probe_encoder`: per seed, C by k-fold CV on the TRAINING split only, accuracy on the
test split; sources without a test split (e.g. the ModelNet10 training split alone) get nested CV. With an
unseen-objects file (`--unseen`, data/carve.py), the training split is split in two instead: C is chosen and the
probe fitted on the objects outside the file, and scored once on the objects in it, which pretraining never saw.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from .probe import check_classes, probe_encoder


def protocol(folds: int, seeds: int, has_test: bool, unseen: dict | None = None, solver: str = "fast") -> str:
    if unseen:
        return (
            f"linear SVM ({solver} solver), C by {folds}-fold CV on the {unseen['train_objects']} training "
            f"objects outside {unseen['file']} only, accuracy once on its {unseen['objects']} unseen objects "
            f"(stratified {unseen['fraction']:g} of the train split, seed {unseen['seed']}, kept out of pretraining), "
            f"{seeds} seeds"
        )
    return (
        f"linear SVM ({solver} solver), C by {folds}-fold CV on the train split only, "
        + ("test-split accuracy" if has_test else "nested CV accuracy (no test split)")
        + f", {seeds} seeds"
    )


def carve(dataset, path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(the other objects, the unseen objects, what the report records) of `dataset` under the unseen-objects
    file `path`, checked against it."""
    from ..data.carve import read_unseen

    unseen, record = read_unseen(path, dataset)
    rest = np.setdiff1d(np.arange(len(dataset)), unseen)
    info = {
        "file": str(path),
        "fraction": record["fraction"],
        "seed": record["seed"],
        "objects": len(unseen),
        "train_objects": len(rest),
    }
    return rest, unseen, info


def probe_checkpoint(
    data: str,
    *,
    checkpoint=None,
    random_init: bool = False,
    preset: str = "default",
    seeds: int = 3,
    folds: int = 5,
    num_points=None,
    device="auto",
    unseen=None,
    progress: bool = True,
    solver: str = "fast",
) -> dict:
    """`crossjepa probe`: load (or randomly initialise) a model and probe it on `data`'s splits (`unseen`: an
    unseen-objects file: fit on the other training objects, score on those)."""
    from ..data import open_dataset
    from ..device import resolve_device
    from ..models import build
    from ..train.checkpoint import load_pretrained
    from .splits import dataset_labels, subset

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
    carved = None
    if unseen:
        rest, held, carved = carve(train_ds, unseen)
        labels = dataset_labels(train_ds)
        train_set, test_set = subset(train_ds, labels, rest), subset(train_ds, labels, held)
    else:
        train_set, test_set = train_ds, open_test_split(data)
    check_classes(dataset_labels(train_set), f"--data {data}: the objects the probe is fitted on")
    report = probe_encoder(
        model,
        train_set,
        test_set,
        seeds=tuple(range(seeds)),
        folds=folds,
        num_points=num_points,
        progress=progress,
        solver=solver,
    )
    report.update(
        {
            "protocol": protocol(folds, seeds, test_set is not None, carved, solver),
            "encoder": source,
            "data": data,
            "train_objects": len(train_set),
            "test_objects": None if test_set is None else len(test_set),
            "classes": getattr(train_ds, "classes", None),
            "unseen": carved,
        }
    )
    return report


def probe_teacher_cache(
    data: str,
    cache: str,
    *,
    test_cache: str | None = None,
    unseen=None,
    seeds: int = 3,
    folds: int = 5,
    solver: str = "fast",
    device="auto",
) -> dict:
    """`crossjepa probe --teacher-cache`: the teacher ceiling, the same protocol on the teacher's own
    view-averaged embeddings (`test_cache`: the test split's cache; `unseen`: an unseen-objects file; without
    either, nested CV on train)."""
    from ..data import open_dataset
    from ..device import resolve_device
    from ..teacher import open_cache
    from .probe import probe_teacher
    from .splits import dataset_labels

    if test_cache and unseen:
        raise ValueError("--test-cache: expected either it or --unseen, not both")

    def opened(path, split):
        dataset, teacher_cache = open_dataset(data, split=split), open_cache(path)
        teacher_cache.check_dataset(dataset)
        return dataset, teacher_cache

    train_ds, train_cache = opened(cache, "train")
    labels, carved, train_objects = dataset_labels(train_ds), None, len(train_ds)
    fitted_on = f"--data {data}: the objects the probe is fitted on"
    if unseen:
        rest, held, carved = carve(train_ds, unseen)
        train_objects = len(rest)
        check_classes(labels[rest], fitted_on)

        def rows(ids):  # probe_teacher reads only the embeddings of the cache it is given
            return SimpleNamespace(embeddings=np.asarray(train_cache.embeddings[ids]))

        report = probe_teacher(
            rows(rest),
            labels[rest],
            rows(held),
            labels[held],
            seeds=tuple(range(seeds)),
            folds=folds,
            solver=solver,
            device=resolve_device(device),
        )
    else:
        check_classes(labels, fitted_on)
        test = (None, None)
        if test_cache:
            test_ds, test_teacher_cache = opened(test_cache, "test")
            test = (test_teacher_cache, dataset_labels(test_ds))
        report = probe_teacher(
            train_cache,
            labels,
            *test,
            seeds=tuple(range(seeds)),
            folds=folds,
            solver=solver,
            device=resolve_device(device),
        )
    report.update(
        {
            "protocol": protocol(folds, seeds, test_cache is not None, carved, solver),
            "encoder": f"teacher {train_cache.meta['teacher']['name']} (view-averaged embeddings of {cache})",
            "data": data,
            "train_objects": train_objects,
            "unseen": carved,
        }
    )
    return report


def open_test_split(data: str, num_points=None):
    """The test split when the source has one; None (-> nested CV) when it has none."""
    from ..data import SplitNotFound, open_dataset

    try:
        test = open_dataset(data, split="test", num_points=num_points)
    except SplitNotFound:
        return None
    return test if len(test) else None
