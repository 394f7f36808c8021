"""Point cloud -> patch tokens: FPS centers, kNN neighbourhoods, mini-PointNet patch embedding."""

from __future__ import annotations

import torch
from torch import nn

from ..ops import farthest_point_sample, group
from .config import TokenizerConfig


class PatchEmbed(nn.Module):
    """Mini-PointNet over one neighbourhood: per-point 3 -> local_hidden -> local_out, max-pool, concat the pooled
    feature to every point, 2*local_out -> global_hidden -> width, max-pool -> one token."""

    def __init__(self, cfg: TokenizerConfig, width: int) -> None:
        super().__init__()
        self.local = nn.Sequential(
            nn.Conv1d(3, cfg.local_hidden, 1), nn.BatchNorm1d(cfg.local_hidden), nn.ReLU(inplace=True),
            nn.Conv1d(cfg.local_hidden, cfg.local_out, 1))
        self.merge = nn.Sequential(
            nn.Conv1d(2 * cfg.local_out, cfg.global_hidden, 1), nn.BatchNorm1d(cfg.global_hidden),
            nn.ReLU(inplace=True), nn.Conv1d(cfg.global_hidden, width, 1))

    def forward(self, neighbourhoods: torch.Tensor) -> torch.Tensor:
        b, g, k, _ = neighbourhoods.shape
        x = self.local(neighbourhoods.reshape(b * g, k, 3).transpose(1, 2))  # (BG, C, k)
        pooled = x.amax(dim=2, keepdim=True)
        x = self.merge(torch.cat([pooled.expand(-1, -1, k), x], dim=1))
        return x.amax(dim=2).reshape(b, g, -1)


class Tokenizer(nn.Module):
    """(B, P, 3) points -> patch tokens (B, G, W) and their centers (B, G, 3)."""

    def __init__(self, cfg: TokenizerConfig, width: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = PatchEmbed(cfg, width)

    def group(self, points: torch.Tensor, generator: torch.Generator | None = None):
        """Centers (B, G, 3) by FPS and their centred kNN neighbourhoods (B, G, k, 3)."""
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points: expected a (B, P, 3) tensor, got shape {tuple(points.shape)}")
        need = max(self.cfg.num_groups, self.cfg.group_size)
        if points.shape[1] < need:
            raise ValueError(f"points: expected at least {need} points per cloud, got {points.shape[1]}")
        start = "random" if self.cfg.fps_start == "random" else 0
        # No NaN/Inf scan here: it is a host sync per op on the GPU; clouds are checked where they enter
        # (readers, packing, the cache build), and the training loop guards the loss.
        with torch.no_grad():
            idx = farthest_point_sample(points, self.cfg.num_groups, start, generator=generator, check_finite=False)
        centers = torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))
        neighbourhoods, _ = group(points, centers, self.cfg.group_size, check_finite=False)
        return centers, neighbourhoods

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None):
        centers, neighbourhoods = self.group(points, generator)
        return self.embed(neighbourhoods), centers
