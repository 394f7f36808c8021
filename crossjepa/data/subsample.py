"""The one rule taking a cloud of N stored points to P points, used by the datasets (opened with num_points), the
augmenting loaders and the feature extractor (crossjepa/eval/features.py) alike:

- clouds stored in farthest-point order (the packed format, Point-MAE's .dat): the first P points, read
  cyclically when N < P, since a prefix of an FPS ordering is itself an FPS subsample;
- any other cloud: P consecutive entries, from a random offset, of a random permutation of 0..N-1, read
  cyclically. With N >= P that is a uniformly random P-subset (no repeats); with N < P every point appears
  floor(P/N) or ceil(P/N) times. A batch of equal-size clouds shares the permutation and draws one offset
  per cloud, so a batch costs one sort, not one per cloud.

The draws come from a torch.Generator: the same generator state gives the same indices. The datasets draw per
object, from keyed_generator((seed, object)), so that any object can be read alone; the feature extractor
(fixed_size_batches) draws object after object from one generator seeded with its seed (the draws the probe has
always made, so its published numbers stand). Both take a cloud that already has P points as stored (a
permutation would only move FPS's start point).
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ..validate import check_int
from .contract import fps_ordered


def keyed_generator(key: Sequence[int], device="cpu") -> torch.Generator:
    """A generator seeded from a tuple of ints (e.g. (seed, object) or (seed, epoch, batch)), well mixed so that
    neighbouring keys give unrelated streams."""
    mixed = np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(mixed) >> 1)


def prefix_indices(num_stored: int, num_points: int) -> torch.Tensor:
    """(P,) int64: the first num_points points of an FPS-ordered cloud, cyclically when it has fewer."""
    return torch.arange(num_points) % num_stored


def draw_subset(generator: torch.Generator, batch_size: int, num_stored: int, num_points: int) -> torch.Tensor:
    """(B, P) int64 on the generator's device: the random rule of the module docstring for B clouds of
    num_stored points each."""
    if num_stored < 1:
        raise ValueError(f"num_stored: expected a non-empty cloud, got {num_stored} points")
    device = generator.device
    perm = torch.randperm(num_stored, generator=generator, device=device)
    shift = torch.randint(num_stored, (batch_size, 1), generator=generator, device=device)
    return perm[(shift + torch.arange(num_points, device=device)) % num_stored]


def resample_indices(n: int, num_points: int, key: Sequence[int], prefix: bool) -> Optional[np.ndarray]:
    """Indices taking an n-point cloud to num_points by the rule, the random draw from `key` (e.g. (seed,
    object)); None when it already has that size (every point once, in its stored order)."""
    if n == num_points:
        return None
    if prefix:
        return prefix_indices(n, num_points).numpy()
    return draw_subset(keyed_generator(key), 1, n, num_points)[0].numpy()


def fixed_size_batches(
    dataset, num_points: int, *, seed: int = 0, batch_size: int = 64, ids=None, device="cpu"
) -> Iterator[tuple[np.ndarray, torch.Tensor, np.ndarray]]:
    """The objects `ids` of `dataset` (default: all, in order), each cloud taken to `num_points` by the rule, in
    batches -> (ids int64 (B,), points float32 (B, P, 3) on `device`, labels int64 (B,)); the ids and labels stay
    on the host. A cloud of `num_points` points is used as stored, an FPS-ordered one gives its prefix, and every
    other cloud, in the order of `ids`, takes the next random subset from one CPU generator seeded with `seed`:
    the same objects in the same order give the same points for a seed, whatever the batch size."""
    check_int("batch_size", batch_size, 1)
    check_int("num_points", num_points, 1)
    prefix = fps_ordered(dataset)
    generator = torch.Generator().manual_seed(seed)
    ids = np.arange(len(dataset)) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
    for start in range(0, len(ids), batch_size):
        rows = ids[start : start + batch_size]
        items = [dataset[int(i)] for i in rows]
        clouds = []
        for i, item in zip(rows.tolist(), items):
            cloud = torch.as_tensor(item["points"], dtype=torch.float32)
            if cloud.ndim != 2 or cloud.shape[1] != 3 or cloud.shape[0] == 0:
                raise ValueError(f"dataset[{i}]: expected points (N > 0, 3), got shape {tuple(cloud.shape)}")
            if cloud.shape[0] != num_points:
                stored = cloud.shape[0]
                index = (
                    prefix_indices(stored, num_points) if prefix else draw_subset(generator, 1, stored, num_points)[0]
                )
                cloud = cloud[index]
            clouds.append(cloud)
        labels = np.array([int(item["label"]) for item in items], dtype=np.int64)
        yield rows, torch.stack(clouds).to(device), labels
