"""The dataset contract: what crossjepa reads of a dataset, stated once.

Required of every dataset (`PointDataset`): ``len(ds)`` and ``ds[i] -> {"points": (P, 3) float tensor,
"label": int}`` (label -1 when the source has none).

Optional, each looked for only here (the functions below), with a fallback for a dataset that lacks it; the
readers of data/formats and SyntheticShapes have all of it (`DescribedDataset`), Subset all but fingerprint():
- ``labels`` (N,) int64 and ``classes`` (names or None): the labels without loading any cloud;
- ``names``: one id per object;
- ``fps_ordered``: the stored clouds are in farthest-point order, so a prefix is an FPS subsample;
- ``kind``: the reader's format name;
- ``fingerprint() -> str``: identifies the objects (the teacher cache and unseen-objects files record it).
Packed arrays, for loaders that gather whole batches (data/loaders.py): ``points_array`` (O, N, 3),
``labels_array`` (O,), and ``array_rows`` (len(ds),), the row of points_array holding each object (a subset).
"""

from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import numpy as np


class PointDataset(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> dict: ...


@runtime_checkable
class DescribedDataset(Protocol):
    labels: np.ndarray
    classes: Optional[list]
    names: list
    fps_ordered: bool
    kind: str

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> dict: ...

    def fingerprint(self) -> str: ...


def labels(dataset: PointDataset) -> np.ndarray:
    """Every object's label, int64 (N,) (-1 where unlabelled): the dataset's `labels`, else its packed
    `labels_array` (when object i is row i), else read item by item."""
    found = getattr(dataset, "labels", None)
    if found is None and array_rows(dataset) is None:
        found = labels_array(dataset)
    if found is None:
        found = [int(dataset[i]["label"]) for i in range(len(dataset))]
    return np.asarray(found, dtype=np.int64).reshape(-1)


def dataset_labels(dataset: PointDataset) -> np.ndarray:
    """`labels`, refusing a dataset with unlabelled objects (carving, probing and fine-tuning need labels)."""
    found = labels(dataset)
    if (found < 0).any():
        raise ValueError("data: expected labelled objects, found label -1 (a source without labels)")
    return found


def classes(dataset: PointDataset) -> Optional[list]:
    return getattr(dataset, "classes", None)


def names(dataset: PointDataset) -> list[str]:
    """One id per object: the dataset's `names`, else the object numbers."""
    found = getattr(dataset, "names", None)
    return [str(n) for n in found] if found is not None else [str(i) for i in range(len(dataset))]


def fps_ordered(dataset: PointDataset) -> bool:
    return bool(getattr(dataset, "fps_ordered", False))


def kind(dataset: PointDataset) -> str:
    return str(getattr(dataset, "kind", type(dataset).__name__))


def is_scanned(dataset: PointDataset) -> bool:
    """Scanned real-world objects (ScanObjectNN): not aligned to an up axis like CAD models."""
    return "scanobjectnn" in kind(dataset)


def points_array(dataset: PointDataset):
    """The packed points (O, N, 3) a loader gathers batches from, or None."""
    return getattr(dataset, "points_array", None)


def labels_array(dataset: PointDataset) -> Optional[np.ndarray]:
    """The labels (O,) of the packed rows, or None."""
    found = getattr(dataset, "labels_array", None)
    return None if found is None else np.asarray(found, dtype=np.int64).reshape(-1)


def array_rows(dataset: PointDataset) -> Optional[np.ndarray]:
    """The row of dataset.points_array holding each object, or None when object i is row i."""
    rows = getattr(dataset, "array_rows", None)
    return None if rows is None else np.asarray(rows, dtype=np.int64)
