"""The packed format: any source converted once into arrays that are read zero-copy.

A packed dataset is a folder:
  points.npy   float16 [objects, P, 3], standard .npy (np.load(..., mmap_mode="r") maps it), clouds normalised
               and in farthest-point order from index 0, so any prefix of length k is an FPS subsample of k
  labels.npy   int64 [objects] (-1 where the source has no label)
  names.json   one id per object
  meta.json    format, version, split, sizes, classes, source kind + fingerprint, sha256 of the three files
It is written to a temporary folder beside the target and renamed into place; packing the same source twice
gives identical bytes (no timestamps or paths inside).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_dir
from .base import PointCloudDataset, SplitNotFound, check_num_points, corrupt

FORMAT = "crossjepa-packed"
VERSION = 1
FILES = ("points.npy", "labels.npy", "names.json")


def is_packed(path: Path) -> bool:
    return (path / "meta.json").is_file() and (path / "points.npy").is_file()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
            raise ValueError(f"{self.path}: packed format version {self.meta.get('version')!r}, "
                             f"this reader knows {VERSION}")
        if split is not None and split != self.meta["split"]:
            raise SplitNotFound(f"{self.path}: packed folder holds split {self.meta['split']!r}, asked for {split!r}")
        try:
            self.points_array = np.load(self.path / "points.npy", mmap_mode="r")
            self.labels_array = np.load(self.path / "labels.npy")
            names = json.loads((self.path / "names.json").read_text())
        except (OSError, ValueError) as e:
            raise corrupt(self.path, f"unreadable packed file ({e})") from None
        count, size = self.meta["num_objects"], self.meta["num_points"]
        if (self.points_array.dtype != np.float16 or self.points_array.shape != (count, size, 3)
                or self.labels_array.shape != (count,) or len(names) != count):
            raise corrupt(self.path, f"arrays do not match meta.json ({count} objects x {size} points): "
                                     f"points {self.points_array.dtype} {self.points_array.shape}, "
                                     f"labels {self.labels_array.shape}, {len(names)} names")
        super().__init__(names, self.labels_array, self.meta["classes"], self.meta["split"],
                         num_points=num_points, normalize=False)
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
            if sha256_file(self.path / name) != expected:
                raise corrupt(self.path / name, "sha256 differs from meta.json")


def _subsample(items: list, num_points: int) -> np.ndarray:
    """Clouds of one size (B, N, 3) -> (B, num_points, 3) by FPS from index 0 (cyclic repeat when N < P)."""
    from ..ops import farthest_point_sample

    clouds = torch.stack([it["points"] for it in items]).float()
    m = min(clouds.shape[1], num_points)
    idx = farthest_point_sample(clouds, m)
    chosen = torch.gather(clouds, 1, idx[..., None].expand(-1, -1, 3))
    if m < num_points:
        chosen = chosen[:, torch.arange(num_points) % m]
    return chosen.numpy().astype(np.float16)


def _write(ds, tmp: Path, num_points: int, progress: bool, batch_size: int, workers: int) -> np.ndarray:
    from tqdm import tqdm

    n = len(ds)
    points = np.lib.format.open_memmap(tmp / "points.npy", mode="w+", dtype=np.float16, shape=(n, num_points, 3))
    labels = np.empty(n, dtype=np.int64)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=n, disable=not progress, desc="pack", unit="obj") as bar:
        for start in range(0, n, batch_size):
            items = list(pool.map(ds.__getitem__, range(start, min(n, start + batch_size))))
            by_size = {}
            for k, item in enumerate(items):
                by_size.setdefault(item["points"].shape[0], []).append(k)
                labels[start + k] = item["label"]
            for ks in by_size.values():  # FPS batched over clouds of equal size
                points[start + np.array(ks)] = _subsample([items[k] for k in ks], num_points)
            bar.update(len(items))
    points.flush()
    del points
    return labels


def pack(src_spec, out_dir, split: str = "train", num_points: int = 1024, progress: bool = True, *,
         overwrite: bool = False, batch_size: int = 64, workers: int = 4, seed: int = 0) -> Path:
    """Convert a data spec (or a dataset object) into a packed folder at ``out_dir``; returns its path.
    The source is read at its stored size (normalised), then each cloud is reduced to ``num_points`` by
    farthest point sampling from index 0, ``batch_size`` clouds of equal size per FPS call, files read by
    ``workers`` threads."""
    num_points = check_num_points(num_points)
    if num_points is None:
        raise ValueError("num_points: expected a positive int, got None")
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size, workers: expected positive ints, got {batch_size}, {workers}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ValueError(f"out_dir: {out} already exists (pass overwrite=True to replace it)")
    if isinstance(src_spec, (str, os.PathLike)):
        from .formats import open_dataset

        ds = open_dataset(src_spec, split=split, num_points=None, seed=seed)
    elif hasattr(src_spec, "__len__") and hasattr(src_spec, "__getitem__"):
        ds = src_spec
    else:
        raise TypeError(f"src_spec: expected a data spec, a path or a dataset, got {type(src_spec).__name__}")
    if len(ds) == 0:
        raise ValueError(f"src_spec: {src_spec!r} has no objects for split {split!r}")
    with atomic_dir(out) as tmp:
        labels = _write(ds, tmp, num_points, progress, batch_size, workers)
        np.save(tmp / "labels.npy", labels)
        names = getattr(ds, "names", None) or [str(i) for i in range(len(ds))]
        (tmp / "names.json").write_text(json.dumps([str(x) for x in names]) + "\n")
        classes = getattr(ds, "classes", None)
        meta = {"format": FORMAT, "version": VERSION, "split": getattr(ds, "split", split),
                "num_objects": len(ds), "num_points": num_points, "dtype": "float16",
                "classes": None if classes is None else [str(c) for c in classes],
                "normalized": bool(getattr(ds, "normalized", getattr(ds, "normalize", True))),
                "sampling": "farthest point sampling from index 0 (a prefix of k points is an FPS subsample)",
                "source": {"kind": getattr(ds, "kind", type(ds).__name__),
                           "fingerprint": ds.fingerprint() if hasattr(ds, "fingerprint") else None},
                "sha256": {name: sha256_file(tmp / name) for name in FILES}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
