"""The teacher side of a training batch, read with its points: make_loader(..., targets=CachedTargets(...))
yields each batch with its objects' cached view embeddings. They are sliced from the memory-mapped cache on
the host, where the batch is built (a DataLoader worker, or the loader's prefetch thread), so the training step
never reads a device tensor back to find its targets."""

from __future__ import annotations

import numpy as np
import torch

_VIEW_STREAM = 0x56494557  # keeps the view draws apart from every other stream seeded by (seed, epoch, batch)


class CachedTargets:
    """For each object of a batch, V' distinct random views of a teacher cache: {"target" (B, V', D) as cached,
    "poses" (B, V', 4, 4), and "histograms" (B, V', 3*bins) only when the condition reads them}.

    The views of a batch come from a generator seeded by the loader's (seed, rank, epoch, batch), so they
    depend on nothing drawn before (a resumed run draws the same ones, workers share no state). `rows`: the
    cache row of each object the loader numbers (None: object i is row i). Poses are as cached: turn them with
    the batch's augmentation rotation (transforms.rotate_poses) on whatever device that rotation lives.
    Picklable (the cache re-opens by path), so it runs in spawned workers too."""

    def __init__(self, cache, views_per_object: int, rows: np.ndarray | None = None, histograms: bool = True):
        if not 1 <= views_per_object <= cache.num_views:
            raise ValueError(
                f"views_per_object: expected 1..{cache.num_views} (views in the cache), got {views_per_object}"
            )
        self.cache, self.k, self.rows, self.histograms = cache, views_per_object, rows, histograms

    def views(self, key: tuple[int, int, int, int], size: int) -> np.ndarray:
        """(size, V') distinct view numbers per object of the batch `key` = (seed, rank, epoch, batch)."""
        rng = np.random.default_rng([*key, _VIEW_STREAM])
        return rng.random((size, self.cache.num_views)).argsort(axis=1)[:, : self.k]

    def read(self, key: tuple[int, int, int, int], index: np.ndarray) -> dict:
        """The targets of batch `key` = (seed, rank, epoch, batch), whose objects are `index`: CPU tensors."""
        rows = np.asarray(index, dtype=np.int64)
        if self.rows is not None:
            rows = self.rows[rows]
        pick = (np.arange(len(rows))[:, None], self.views(key, len(rows)))
        # Whole rows are read (contiguous on disk), then the V' views kept.
        out = {
            "target": np.asarray(self.cache.embeddings[rows])[pick],
            "poses": np.asarray(self.cache.poses[rows])[pick],
        }
        if self.histograms:
            out["histograms"] = np.asarray(self.cache.histograms[rows])[pick]
        return {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in out.items()}
