"""Stratified, seeded carving of a dataset's objects, and the unseen-objects file.

The unseen-objects file (`unseen_objects.json`, written by `crossjepa pretrain --unseen-fraction F` or by
`crossjepa unseen`) names a stratified set of objects of a dataset's training split that pretraining never trains
on; `crossjepa probe --unseen FILE` chooses C on the other objects and scores once on these. It records the
dataset's fingerprint, so it cannot be applied to other data by mistake.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ..validate import check_number
from . import contract
from .contract import dataset_labels

UNSEEN_FORMAT = "crossjepa-unseen-objects"
UNSEEN_VERSION = 1
UNSEEN_FILE = "unseen_objects.json"  # its name in a pretraining run's folder


def stratified_split(labels: np.ndarray, fraction: float, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices: `fraction` of every class held out, drawn with `seed`. `name` is the
    setting the fraction came from, for the error message."""
    index = np.arange(len(labels))
    try:
        kept, held = train_test_split(index, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as err:  # too few objects per class for a stratified part
        raise ValueError(
            f"{name}: cannot carve a stratified {fraction:g} part from {len(labels)} objects "
            f"({str(err).splitlines()[0]})"
        ) from None
    return np.sort(kept), np.sort(held)


def carve_unseen(dataset, fraction: float, seed: int, name: str = "unseen_fraction") -> dict:
    """The unseen-objects record of `dataset`: a stratified `fraction` of its objects drawn with `seed`.
    The one function behind both `crossjepa pretrain --unseen-fraction` and `crossjepa unseen`; `name` is the
    setting the fraction came from, for error messages."""
    check_number(name, fraction, 0, 1, lo_open=True, hi_open=True)
    try:
        labels = dataset_labels(dataset)
    except ValueError:
        raise ValueError(
            f"{name}: the unseen objects are carved stratified by label, and --data has unlabelled objects"
        ) from None
    _, unseen = stratified_split(labels, fraction, seed, name)
    classes = contract.classes(dataset)
    counts = Counter(labels[unseen].tolist())
    return {
        "format": UNSEEN_FORMAT,
        "version": UNSEEN_VERSION,
        "dataset": {"fingerprint": str(dataset.fingerprint()), "num_objects": len(dataset)},
        "fraction": fraction,
        "seed": seed,
        "num_unseen": len(unseen),
        "class_counts": {(classes[c] if classes else str(c)): counts[c] for c in sorted(counts)},
        "objects": [int(i) for i in unseen],
    }


def read_unseen(path: str | Path, dataset, arg: str = "--unseen") -> tuple[np.ndarray, dict]:
    """(sorted object indices, the record) of an unseen-objects file, checked against `dataset` (the data it
    is used with): one ValueError naming `arg` when it is not such a file or was carved from other data."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{arg} {path}: no such file (pretrain --unseen-fraction or `crossjepa unseen` writes it)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{arg} {path}: not a JSON file ({err})") from None
    if not isinstance(record, dict) or record.get("format") != UNSEEN_FORMAT:
        raise ValueError(f"{arg} {path}: expected an unseen-objects file (format {UNSEEN_FORMAT!r})")
    if record.get("version") != UNSEEN_VERSION:
        raise ValueError(f"{arg} {path}: expected version {UNSEEN_VERSION}, got {record.get('version')!r}")
    want, have = record.get("dataset"), {"fingerprint": str(dataset.fingerprint()), "num_objects": len(dataset)}
    if want != have:
        what = (
            f"dataset {want.get('fingerprint')} ({want.get('num_objects')} objects)"
            if isinstance(want, dict)
            else "no recorded dataset"
        )
        raise ValueError(
            f"{arg} {path}: carved from {what}, not --data's {have['fingerprint']} ({have['num_objects']} objects)"
        )
    ids = np.asarray(record.get("objects", []))
    valid = ids.dtype.kind in "iu" and ids.ndim == 1 and len(ids) > 0
    if not valid or (np.diff(ids) <= 0).any() or ids[0] < 0 or ids[-1] >= len(dataset):
        raise ValueError(f"{arg} {path}: expected sorted distinct object indices in [0, {len(dataset)})")
    return ids.astype(np.int64), record
