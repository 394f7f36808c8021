"""The one rule taking a cloud of N stored points to P points, used by the datasets, the loaders and the
feature extraction alike:

- clouds stored in farthest-point order (the packed format, Point-MAE's .dat): the first P points, read
  cyclically when N < P, since a prefix of an FPS ordering is itself an FPS subsample;
- any other cloud: P consecutive entries, from a random offset, of a random permutation of 0..N-1, read
  cyclically. With N >= P that is a uniformly random P-subset (no repeats); with N < P every point appears
  floor(P/N) or ceil(P/N) times. A batch of equal-size clouds shares the permutation and draws one offset
  per cloud, so a batch costs one sort, not one per cloud.

The draws come from a torch.Generator: the same generator state gives the same indices.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


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


def subsample(points: torch.Tensor, num_points: int, generator: torch.Generator) -> torch.Tensor:
    """(P, 3) rows of one (N, 3) cloud, drawn by the random rule."""
    if points.shape[0] == 0:
        raise ValueError("points: expected a non-empty cloud, got 0 points")
    return points[draw_subset(generator, 1, points.shape[0], num_points)[0].to(points.device)]
