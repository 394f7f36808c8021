"""File-per-object datasets, and the class-folder layout ``<root>/<class>/<split>/<file>`` (original ModelNet
and many user datasets). Classes are the sorted subfolders of root that hold split folders, so labels agree
between splits even when a class is missing from one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..base import DEFAULT_MESH_POINTS, PointCloudDataset, SplitNotFound
from .pointfiles import EXTENSIONS, read_cloud_file


class FileDataset(PointCloudDataset):
    """One file per object, read on access (meshes sampled with a generator drawn from (seed, index))."""

    def __init__(self, files, names, labels, classes, split, *, kind: str, **options):
        self.kind = kind
        self.files = [Path(f) for f in files]
        super().__init__(names, labels, classes, split, **options)

    def _load(self, i: int) -> np.ndarray:
        path = self.files[i]
        try:
            return read_cloud_file(path, self.num_points or DEFAULT_MESH_POINTS, (self.seed, i, 0))
        except OSError as e:
            raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
        except ValueError as e:  # readers name the file; this keeps any that did not from losing it
            if str(path) in str(e):
                raise
            raise ValueError(f"{path}: {e}") from None

    def where(self, i: int) -> str:
        return str(self.files[i])


def _class_dirs(root: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


def probe(root: Path, split: str) -> bool:
    return any(os.path.isdir(os.path.join(c.path, s)) for c in _class_dirs(root) for s in {split, "train", "test"})


def open_class_folder(root: Path, split: str, **options) -> FileDataset:
    classes = [c.name for c in _class_dirs(root) if any(e.is_dir() for e in os.scandir(c.path))]
    files, names, labels = [], [], []
    for label, name in enumerate(classes):
        folder = root / name / split
        if not folder.is_dir():
            continue
        entries = sorted(
            e.name
            for e in os.scandir(folder)
            if e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in EXTENSIONS
        )
        files += [folder / e for e in entries]
        names += [f"{name}/{e}" for e in entries]
        labels += [label] * len(entries)
    if not files:
        raise SplitNotFound(
            f"{root}: no point or mesh files for split {split!r} "
            f"(looked for <class>/{split}/*{{{','.join(EXTENSIONS)}}})"
        )
    # The layout is ModelNet's, whose meshes are z-up: unless told otherwise, read them as z-up.
    options["up_axis"] = options.get("up_axis") or "z"
    return FileDataset(files, names, labels, classes, split, kind="class-folder", **options)
