"""ModelNet40 ``modelnet40_normal_resampled`` and Point-MAE's cache of it.

- ``<prefix>_shape_names.txt`` (class order = label), ``<prefix>_{split}.txt`` (ids like ``night_stand_0001``),
  ``<class>/<id>.txt`` with ``x,y,z,nx,ny,nz`` rows. The official folder holds both the modelnet10 and
  modelnet40 lists: modelnet40 is used when both are there.
- ``<prefix>_{split}_<K>pts_fps.dat``: a pickle of [list of (K, 6) arrays, list of labels], points in
  farthest-point order. Preferred over the text files when present (one read instead of ~10,000); the largest K
  wins when several exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from ...validate import check_choice
from ..base import ArrayDataset, PointCloudDataset, SplitNotFound, corrupt
from .classfolder import FileDataset
from .common import load_pickle, split_file

_DAT = re.compile(r"^(?P<prefix>.+)_(?P<split>train|test)_(?P<k>\d+)pts_fps\.dat$")


def _prefix(root: Path) -> Optional[str]:
    prefixes = sorted(p.name[: -len("_shape_names.txt")] for p in root.glob("*_shape_names.txt"))
    return "modelnet40" if "modelnet40" in prefixes else (prefixes[0] if prefixes else None)


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _dat_files(root: Path, prefix: Optional[str], split: str) -> list[Path]:
    found = [(m, p) for p in root.glob("*pts_fps.dat") if (m := _DAT.match(p.name))]
    found = [(int(m["k"]), p) for m, p in found if m["split"] == split and prefix in (None, m["prefix"])]
    return [p for _, p in sorted(found, key=lambda kp: (-kp[0], kp[1].name))]


def probe(root: Path, split: str) -> bool:
    prefix = _prefix(root)
    return prefix is not None or bool(_dat_files(root, None, split))


def open_dat_file(path: Path, split: str, **options) -> ArrayDataset:
    """A .dat named directly: the split's sibling file, with class names and ids from its folder if there."""
    path = split_file(path, split)
    m = _DAT.match(path.name)
    prefix = m["prefix"] if m else _prefix(path.parent)
    names_file, ids_file = path.parent / f"{prefix}_shape_names.txt", path.parent / f"{prefix}_{split}.txt"
    classes = _lines(names_file) if names_file.is_file() else None
    ids = _lines(ids_file) if ids_file.is_file() else None
    return open_dat(path, split, classes, ids, **options)


def open_dat(path: Path, split: str, classes=None, names=None, **options) -> ArrayDataset:
    content = load_pickle(path)
    try:
        points, labels = content
        labels = np.array([np.asarray(lab).reshape(-1)[0] for lab in labels], dtype=np.int64)
        if len(points) != len(labels):
            raise ValueError(f"{len(points)} clouds but {len(labels)} labels")
    except (TypeError, ValueError, IndexError) as e:
        raise corrupt(path, f"expected a pickle of [points list, labels list] ({e})") from None
    if names is not None and len(names) != len(points):
        names = None
    ds = ArrayDataset(points, labels, classes, split, kind="modelnet-fps-dat", source=path.name, names=names, **options)
    ds.fps_ordered = True
    return ds


def open_modelnet(root: Path, split: str, **options) -> PointCloudDataset:
    check_choice("split", split, ("train", "test"), why="ModelNet's splits")
    prefix = _prefix(root)
    classes = _lines(root / f"{prefix}_shape_names.txt") if prefix else None
    listing = root / f"{prefix}_{split}.txt"
    ids = _lines(listing) if prefix and listing.is_file() else None
    dats = _dat_files(root, prefix, split)
    if dats:
        return open_dat(dats[0], split, classes=classes, names=ids, **options)
    if ids is None:
        raise SplitNotFound(f"{root}: no ModelNet list {listing.name} or {prefix}_{split}_<K>pts_fps.dat")
    index = {c: k for k, c in enumerate(classes)}
    cls = [i.rsplit("_", 1)[0] for i in ids]
    unknown = sorted(set(cls) - set(index))
    if unknown:
        raise ValueError(f"{listing}: ids of classes not in {prefix}_shape_names.txt: {unknown[:5]}")
    files = [root / c / f"{i}.txt" for c, i in zip(cls, ids)]
    return FileDataset(files, ids, [index[c] for c in cls], classes, split, kind="modelnet-resampled", **options)
