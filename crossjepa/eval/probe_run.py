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


def probe_checkpoint(cfg, progress: bool = True) -> dict:
    """`crossjepa probe` with --checkpoint or --random-init (cfg: eval.config.ProbeConfig): load (or randomly
    initialise) a model and probe it on the data's splits (`unseen`: an unseen-objects file: fit on the other
    training objects, score on those)."""
    from ..data import contract, open_dataset
    from ..data.subset import Subset
    from ..device import resolve_device
    from ..models import build
    from ..train.checkpoint import load_pretrained

    dev = resolve_device(cfg.device)
    if cfg.checkpoint:
        model = load_pretrained(cfg.checkpoint, device=dev)
        source = str(cfg.checkpoint)
    elif cfg.random_init:
        torch.manual_seed(0)
        model = build(cfg.preset).to(dev)
        source = f"random-init ({cfg.preset})"
    else:
        raise ValueError("--checkpoint or --random-init: expected exactly one of them")
    train_ds = open_dataset(cfg.data, split="train")
    carved = None
    if cfg.unseen:
        rest, held, carved = carve(train_ds, cfg.unseen)
        train_set, test_set = Subset(train_ds, rest), Subset(train_ds, held)
    else:
        train_set, test_set = train_ds, open_test_split(cfg.data)
    check_classes(contract.dataset_labels(train_set), f"--data {cfg.data}: the objects the probe is fitted on")
    seeds = tuple(range(cfg.seeds))
    options = {"folds": cfg.folds, "num_points": cfg.num_points, "solver": cfg.solver}
    report = probe_encoder(model, train_set, test_set, seeds=seeds, progress=progress, **options)
    report.update(
        {
            "protocol": protocol(cfg.folds, cfg.seeds, test_set is not None, carved, cfg.solver),
            "encoder": source,
            "data": cfg.data,
            "train_objects": len(train_set),
            "test_objects": None if test_set is None else len(test_set),
            "classes": contract.classes(train_ds),
            "unseen": carved,
        }
    )
    return report


def probe_teacher_cache(cfg) -> dict:
    """`crossjepa probe --teacher-cache` (cfg: eval.config.ProbeConfig): the teacher ceiling, the same protocol on
    the teacher's own view-averaged embeddings (`test_cache`: the test split's cache; `unseen`: an unseen-objects
    file; without either, nested CV on train)."""
    from ..data import open_dataset
    from ..data.contract import dataset_labels
    from ..device import resolve_device
    from ..teacher import open_cache
    from .probe import probe_teacher

    def opened(path, split):
        dataset, teacher_cache = open_dataset(cfg.data, split=split), open_cache(path)
        teacher_cache.check_dataset(dataset)
        return dataset, teacher_cache

    train_ds, train_cache = opened(cfg.teacher_cache, "train")
    labels, carved, train_objects = dataset_labels(train_ds), None, len(train_ds)
    options = {"seeds": tuple(range(cfg.seeds)), "folds": cfg.folds, "solver": cfg.solver}
    options["device"] = resolve_device(cfg.device)
    fitted_on = f"--data {cfg.data}: the objects the probe is fitted on"
    if cfg.unseen:
        rest, held, carved = carve(train_ds, cfg.unseen)
        train_objects = len(rest)
        check_classes(labels[rest], fitted_on)

        def rows(ids):  # probe_teacher reads only the embeddings of the cache it is given
            return SimpleNamespace(embeddings=np.asarray(train_cache.embeddings[ids]))

        report = probe_teacher(rows(rest), labels[rest], rows(held), labels[held], **options)
    else:
        check_classes(labels, fitted_on)
        test = (None, None)
        if cfg.test_cache:
            test_ds, test_teacher_cache = opened(cfg.test_cache, "test")
            test = (test_teacher_cache, dataset_labels(test_ds))
        report = probe_teacher(train_cache, labels, *test, **options)
    teacher = train_cache.meta["teacher"]["name"]
    report.update(
        {
            "protocol": protocol(cfg.folds, cfg.seeds, cfg.test_cache is not None, carved, cfg.solver),
            "encoder": f"teacher {teacher} (view-averaged embeddings of {cfg.teacher_cache})",
            "data": cfg.data,
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
