"""The packed format: any source converted once into arrays that are read zero-copy.

A packed dataset is a folder:
  points.npy   float16 [objects, P, 3], standard .npy (np.load(..., mmap_mode="r") maps it), clouds normalised
               and in farthest-point order from index 0, so any prefix of length k is an FPS subsample of k
  labels.npy   int64 [objects] (-1 where the source has no label)
  names.json   one id per object
  meta.json    format, version, split, sizes, classes, source kind + fingerprint, sha256 of the three files
data/packing.py writes it; this module reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..hashing import file_sha256
from .base import PointCloudDataset, SplitNotFound, corrupt

FORMAT = "crossjepa-packed"
VERSION = 1
FILES = ("points.npy", "labels.npy", "names.json")


def is_packed(path: Path) -> bool:
    return (path / "meta.json").is_file() and (path / "points.npy").is_file()


class PackedDataset(PointCloudDataset):
    """Reader of a packed folder. ``points_array`` (the fp16 memmap) and ``labels_array`` serve batch-level
    gathers; ``ds[i]`` casts one cloud to float32. ``num_points`` <= P takes the FPS prefix, > P repeats
    cyclically. Clouds are returned as stored: they were normalised when packed."""

    kind = "packed"
    fps_ordered = True

    def __init__(self, path, split=None, num_points=None):
        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise corrupt(self.path / "meta.json", f"unreadable ({e})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise corrupt(self.path / "meta.json", f"not a {FORMAT} meta.json")
        if self.meta.get("version") != VERSION:
            raise ValueError(
                f"{self.path}: packed format version {self.meta.get('version')!r}, this reader knows {VERSION}"
            )
        if split is not None and split != self.meta["split"]:
            raise SplitNotFound(f"{self.path}: packed folder holds split {self.meta['split']!r}, asked for {split!r}")
        try:
            self.points_array = np.load(self.path / "points.npy", mmap_mode="r")
            self.labels_array = np.load(self.path / "labels.npy")
            names = json.loads((self.path / "names.json").read_text())
        except (OSError, ValueError) as e:
            raise corrupt(self.path, f"unreadable packed file ({e})") from None
        count, size = self.meta["num_objects"], self.meta["num_points"]
        if (
            self.points_array.dtype != np.float16
            or self.points_array.shape != (count, size, 3)
            or self.labels_array.shape != (count,)
            or len(names) != count
        ):
            raise corrupt(
                self.path,
                f"arrays do not match meta.json ({count} objects x {size} points): "
                f"points {self.points_array.dtype} {self.points_array.shape}, "
                f"labels {self.labels_array.shape}, {len(names)} names",
            )
        super().__init__(
            names, self.labels_array, self.meta["classes"], self.meta["split"], num_points=num_points, normalize=False
        )
        self.normalized = bool(self.meta["normalized"])

    def _load(self, i: int) -> np.ndarray:
        return self.points_array[i]

    def where(self, i: int) -> str:
        return f"{self.path / 'points.npy'} object {i}"

    def fingerprint(self) -> str:
        key = {"kind": self.kind, "sha256": self.meta["sha256"]}  # the objects, not how many points are read
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def verify(self) -> None:
        """Recompute the checksums; ValueError naming the first file that differs from meta.json."""
        for name, expected in self.meta["sha256"].items():
            if file_sha256(self.path / name) != expected:
                raise corrupt(self.path / name, "sha256 differs from meta.json")
