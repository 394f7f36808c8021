"""Seeded random point clouds, shared by the ops tests and the benchmark suites so that a benchmark times the
inputs the tests check."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cloud(batch: int, n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, n, 3) standard-normal points on the CPU."""
    return torch.randn(batch, n, 3, generator=torch.Generator().manual_seed(seed)).to(dtype)


def query_clouds(batch: int, m: int, n: int, seed: int, dtype: torch.dtype = torch.float32):
    """(queries (batch, m, 3), points (batch, n, 3)), standard normal, drawn from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, m, 3, generator=g).to(dtype), torch.randn(batch, n, 3, generator=g).to(dtype)


def ball_clouds(batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, n, 3) points uniform in the unit ball (the datasets' normalisation), float32 on the CPU."""
    direction = F.normalize(torch.randn(batch, n, 3, generator=generator), dim=-1)
    return direction * torch.rand(batch, n, 1, generator=generator) ** (1 / 3)
