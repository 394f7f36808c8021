"""The dataset protocol every reader follows, and the per-cloud steps they share.

A dataset is indexable: ``ds[i] -> {"points": FloatTensor (P, 3), "label": int}`` (label -1 when the source
has none), with ``len(ds)``, ``ds.classes`` (list of names or None), ``ds.split``, ``ds.names`` (one id per
object) and ``ds.fingerprint()`` (a stable string identifying the objects and how they are read).

Per cloud, in this order:
1. non-finite coordinates or an empty cloud are an error naming where the cloud came from;
2. normalisation (default): centre on the centroid, scale so the farthest point is at distance 1. It is done
   on the whole stored cloud, so the scale does not depend on ``num_points``;
2b. the source's up axis is turned onto +y, crossjepa's world up (the renderer's cameras orbit y, the
   augmentation spins about y): ``up_axis`` "z" (ModelNet's meshes) maps (x, y, z) -> (x, z, -y), "x" maps
   (x, y, z) -> (-y, x, z); both are rotations, so shapes and handedness are kept;
3. ``num_points`` (None keeps the stored cloud): a cloud of another size is resampled by the rule of
   data/subsample.py (the prefix when the source is stored in farthest-point order, else a random subset,
   drawn from ``(seed, index)`` so an object always gives the same points); meshes are sampled to exactly
   ``num_points`` (or ``DEFAULT_MESH_POINTS``) instead, see formats/surface.py.
"""

from __future__ import annotations

import hashlib
import json
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..validate import check_choice, check_int
from .subsample import resample_indices

DEFAULT_MESH_POINTS = 8192  # points sampled from a mesh surface when num_points is None
UP_AXES = ("x", "y", "z")
_TO_Y_UP = {
    "x": np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float32),
    "z": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float32),
}  # rows: new x, y, z


class CorruptFileError(ValueError):
    """A file that exists but cannot be read as its format says; the message names the file first."""


class SplitNotFound(ValueError):
    """The source is readable but holds no objects for the split asked for (e.g. no test split): callers may
    fall back (the probe then uses nested CV), where any other error must surface."""


def corrupt(path, reason: str) -> CorruptFileError:
    return CorruptFileError(f"corrupt file {path}: {reason}")


def check_num_points(num_points) -> Optional[int]:
    return check_int("num_points", num_points, 1, optional=True)


def normalize_cloud(points: np.ndarray) -> np.ndarray:
    """Centre on the centroid and scale to the unit sphere; float64 maths (sources reach ~1e5), float32 out."""
    p = points.astype(np.float64)
    p -= p.mean(axis=0)
    radius = np.sqrt((p * p).sum(axis=1).max())
    if radius > 0:
        p /= radius
    return p.astype(np.float32)


class PointCloudDataset(Dataset):
    """Base of every reader. Subclasses set ``kind`` and implement ``_load(i) -> array (N, >=3)``."""

    kind = "points"
    fps_ordered = False  # stored clouds are in farthest-point order: subsample by prefix

    up_axis = "y"  # the stored clouds' up axis; a reader whose layout has another convention sets its own

    def __init__(
        self,
        names: Sequence[str],
        labels,
        classes: Optional[Sequence[str]],
        split: str,
        *,
        num_points: Optional[int] = None,
        normalize: bool = True,
        seed: int = 0,
        up_axis: Optional[str] = None,
    ):
        self.names = list(names)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.names):
            raise ValueError(f"labels: expected {len(self.names)} labels, got {len(self.labels)}")
        self.classes = None if classes is None else [str(c) for c in classes]
        self.split = split
        self.num_points = check_num_points(num_points)
        self.normalize = bool(normalize)
        self.normalized = self.normalize  # clouds come out normalised (packed data: as recorded when packed)
        self.seed = int(seed)
        if up_axis is not None:
            self.up_axis = check_choice("up_axis", up_axis, UP_AXES)
        self._fingerprint = None

    def __len__(self) -> int:
        return len(self.names)

    def _load(self, i: int) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _load")

    def where(self, i: int) -> str:
        """Where object i comes from, for error messages (a file path for file-per-object formats)."""
        return f"{self.kind} object {self.names[i]!r}"

    def _index(self, i) -> int:
        i = check_int("index", i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} objects")
        return i % n

    def cloud(self, i) -> np.ndarray:
        """Object i as a float32 array (P, 3): checked, normalised and resampled."""
        i = self._index(i)
        raw = np.asarray(self._load(i))
        if raw.ndim != 2 or raw.shape[1] < 3 or raw.shape[0] == 0:
            raise ValueError(f"{self.where(i)}: expected an (N>0, >=3) point array, got shape {raw.shape}")
        points = raw[:, :3]
        if not np.isfinite(points).all():
            raise ValueError(f"{self.where(i)}: non-finite coordinates")
        points = normalize_cloud(points) if self.normalize else points.astype(np.float32)
        if self.up_axis != "y":
            points = points @ _TO_Y_UP[self.up_axis].T
        if self.num_points is not None:
            idx = resample_indices(len(points), self.num_points, (self.seed, i), self.fps_ordered)
            if idx is not None:
                points = points[idx]
        return np.ascontiguousarray(points)

    def __getitem__(self, i) -> dict:
        points = self.cloud(i)
        return {"points": torch.from_numpy(points), "label": int(self.labels[self._index(i)])}

    def fingerprint(self) -> str:
        """sha256 identifying the objects: kind, split, options, ids, labels, classes, and the raw bytes of three
        objects (first, middle, last): cheap, yet different files with the same ids differ. The number of points
        read per cloud is left out, so a cache built from 2048-point renders matches the same data read at 1024."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            head = {
                "kind": self.kind,
                "split": self.split,
                "up_axis": self.up_axis,
                "normalize": self.normalize,
                "seed": self.seed,
                "classes": self.classes,
                "names": self.names,
            }
            h.update(json.dumps(head, sort_keys=True).encode())
            h.update(self.labels.tobytes())
            for i in sorted({0, len(self) // 2, len(self) - 1} if len(self) else ()):
                h.update(np.ascontiguousarray(self._load(i)).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(objects={len(self)}, split={self.split!r}, "
            f"classes={None if self.classes is None else len(self.classes)}, num_points={self.num_points})"
        )


class ArrayDataset(PointCloudDataset):
    """Clouds already in memory: an array (O, N, C) or a list of (N_i, C) arrays (h5, pickle formats)."""

    def __init__(self, clouds, labels, classes, split, *, kind: str, source: str, names=None, **options):
        self.kind = kind
        self.clouds = clouds
        self.source = source
        names = names if names is not None else [f"{source}:{i}" for i in range(len(clouds))]
        super().__init__(names, labels, classes, split, **options)

    def _load(self, i: int) -> np.ndarray:
        return self.clouds[i]

    def where(self, i: int) -> str:
        return f"{self.source} object {i}"
