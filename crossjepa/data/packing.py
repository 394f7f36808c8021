"""Writing the packed format (see data/packed.py): any source converted once into a folder of arrays.

The folder is written beside the target and renamed into place (atomic.atomic_dir); packing the same source
twice gives identical bytes (no timestamps or paths inside).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_dir
from ..hashing import file_sha256
from ..validate import check_int
from .formats import open_dataset
from .packed import FILES, FORMAT, VERSION
from .subsample import prefix_indices


def _subsample(items: list, num_points: int) -> np.ndarray:
    """Clouds of one size (B, N, 3) -> (B, num_points, 3) by FPS from index 0 (cyclic repeat when N < P)."""
    from ..ops import farthest_point_sample  # on first use: `import crossjepa.data` stays light

    clouds = torch.stack([it["points"] for it in items]).float()
    m = min(clouds.shape[1], num_points)
    idx = farthest_point_sample(clouds, m)
    chosen = torch.gather(clouds, 1, idx[..., None].expand(-1, -1, 3))
    if m < num_points:
        chosen = chosen[:, prefix_indices(m, num_points)]
    return chosen.numpy().astype(np.float16)


def _write(ds, tmp: Path, num_points: int, progress: bool, batch_size: int, workers: int) -> np.ndarray:
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


def pack(
    src_spec,
    out_dir,
    split: str = "train",
    num_points: int = 1024,
    progress: bool = True,
    *,
    overwrite: bool = False,
    batch_size: int = 64,
    workers: int = 4,
    seed: int = 0,
) -> Path:
    """Convert a data spec (or a dataset object) into a packed folder at ``out_dir``; returns its path.
    The source is read at its stored size (normalised), then each cloud is reduced to ``num_points`` by
    farthest point sampling from index 0, ``batch_size`` clouds of equal size per FPS call, files read by
    ``workers`` threads."""
    num_points = check_int("num_points", num_points, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    workers = check_int("workers", workers, 1)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ValueError(f"out_dir: {out} already exists (pass overwrite=True to replace it)")
    if isinstance(src_spec, (str, os.PathLike)):
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
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "split": getattr(ds, "split", split),
            "num_objects": len(ds),
            "num_points": num_points,
            "dtype": "float16",
            "classes": None if classes is None else [str(c) for c in classes],
            "normalized": bool(getattr(ds, "normalized", getattr(ds, "normalize", True))),
            "sampling": "farthest point sampling from index 0 (a prefix of k points is an FPS subsample)",
            "source": {
                "kind": getattr(ds, "kind", type(ds).__name__),
                "fingerprint": ds.fingerprint() if hasattr(ds, "fingerprint") else None,
            },
            "sha256": {name: file_sha256(tmp / name) for name in FILES},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
