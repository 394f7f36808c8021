"""HDF5 point sets with datasets ``data`` (O, N, >=3) and ``label``: ModelNet40 ``ply_hdf5_2048`` (shards
``ply_data_{split}<k>.h5`` + ``shape_names.txt``) and ScanObjectNN (``training_objectdataset*.h5`` /
``test_objectdataset*.h5``; OBJ_BG, OBJ_ONLY and PB_T50_RS are different files of this one layout).
Arrays are read into memory once (an open h5py handle does not survive DataLoader worker forks)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..base import ArrayDataset, SplitNotFound, corrupt
from .common import split_file

# label order of the ScanObjectNN release
SCANOBJECTNN_CLASSES = [
    "bag",
    "bin",
    "box",
    "cabinet",
    "chair",
    "desk",
    "display",
    "door",
    "shelf",
    "table",
    "bed",
    "pillow",
    "sink",
    "sofa",
    "toilet",
]


def read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "data" not in f or "label" not in f:
                raise corrupt(path, f"expected HDF5 datasets 'data' and 'label', found {sorted(f.keys())}")
            data, labels = f["data"][:], np.asarray(f["label"][:]).reshape(-1)
    except OSError as e:
        raise corrupt(path, f"unreadable HDF5 ({e})") from None
    if data.ndim != 3 or data.shape[2] < 3 or len(labels) != len(data):
        raise corrupt(path, f"expected data (O, N, >=3) and O labels, got {data.shape} and {labels.shape}")
    return data, labels.astype(np.int64)


def _shape_names(folder: Path):
    path = folder / "shape_names.txt"
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else None


def _dataset(files, split, classes, kind, **options) -> ArrayDataset:
    arrays = [read_h5(f) for f in files]
    data = np.concatenate([a[0] for a in arrays]) if len(arrays) > 1 else arrays[0][0]
    labels = np.concatenate([a[1] for a in arrays])
    names = [f"{f.stem}:{row}" for f, (d, _) in zip(files, arrays) for row in range(len(d))]
    return ArrayDataset(
        data, labels, classes, split, kind=kind, names=names, source=",".join(f.name for f in files), **options
    )


def is_scanobjectnn(path: Path) -> bool:
    return "objectdataset" in path.name


def open_h5_file(path: Path, split: str, **options) -> ArrayDataset:
    path = split_file(path, split)
    if is_scanobjectnn(path):
        return _dataset([path], split, SCANOBJECTNN_CLASSES, "scanobjectnn", **options)
    return _dataset([path], split, _shape_names(path.parent), "hdf5", **options)


def _shard_key(path: Path):
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1, path.name


def probe_modelnet_h5(root: Path) -> bool:
    return any(root.glob("ply_data_*.h5"))


def open_modelnet_h5(root: Path, split: str, **options) -> ArrayDataset:
    files = sorted(root.glob(f"ply_data_{split}*.h5"), key=_shard_key)
    if not files:
        raise SplitNotFound(f"{root}: no ModelNet40 HDF5 shards for split {split!r} (looked for ply_data_{split}*.h5)")
    return _dataset(files, split, _shape_names(root), "modelnet40-h5", **options)


def probe_scanobjectnn(root: Path) -> bool:
    return any(root.glob("training_objectdataset*.h5")) or any(root.glob("test_objectdataset*.h5"))


def open_scanobjectnn(root: Path, split: str, **options) -> ArrayDataset:
    pattern = {"train": "training_objectdataset*.h5", "test": "test_objectdataset*.h5"}.get(split)
    if pattern is None:
        raise ValueError(f"split: ScanObjectNN has 'train' and 'test', got {split!r}")
    files = sorted(root.glob(pattern))
    if not files:
        raise SplitNotFound(f"{root}: no ScanObjectNN file {pattern} for split {split!r}")
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise ValueError(f"{root}: expected one ScanObjectNN file {pattern}, found {found}; pass the file itself")
    return _dataset(files, split, SCANOBJECTNN_CLASSES, "scanobjectnn", **options)
