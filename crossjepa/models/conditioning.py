"""View condition: camera pose (Fourier-encoded) + colour histogram -> MLP -> one vector per view."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ConditionConfig


def fourier_encode(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """(..., n) -> (..., n * (1 + 2F)): the raw values plus sin/cos at 2^0..2^(F-1) times pi."""
    if frequencies == 0:
        return x
    bands = math.pi * 2.0 ** torch.arange(frequencies, device=x.device, dtype=x.dtype)
    angles = (x[..., None] * bands).flatten(-2)
    return torch.cat([x, angles.sin(), angles.cos()], dim=-1)


class ViewConditioner(nn.Module):
    """(poses (B, V, 4, 4) camera-to-world, histograms (B, V, 3*bins)) -> condition (B, V, out_width)."""

    def __init__(self, cfg: ConditionConfig, out_width: int) -> None:
        super().__init__()
        self.cfg = cfg
        pose_numbers = (9 if cfg.rotation_format == "matrix" else 6) + 3
        in_width = 0
        if cfg.use_pose:
            in_width += pose_numbers * (1 + 2 * cfg.frequencies)
        if cfg.use_histogram:
            in_width += 3 * cfg.histogram_bins
        self.mlp = nn.Sequential(nn.Linear(in_width, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, out_width))

    def pose_numbers(self, poses: torch.Tensor) -> torch.Tensor:
        rotation = poses[..., :3, :3]
        if self.cfg.rotation_frame == "w2c":
            rotation = rotation.transpose(-1, -2)
        if self.cfg.rotation_format == "6d":
            rotation = rotation[..., :, :2]  # first two columns determine the rotation
        position = poses[..., :3, 3]  # camera center in world coordinates
        return torch.cat([rotation.flatten(-2), position], dim=-1)

    def forward(self, poses: torch.Tensor, histograms: torch.Tensor | None) -> torch.Tensor:
        """histograms: may be None when the condition does not use them (nothing is read for it)."""
        if poses.ndim != 4 or poses.shape[-2:] != (4, 4):
            raise ValueError(f"poses: expected a (B, V, 4, 4) tensor, got shape {tuple(poses.shape)}")
        bins3 = 3 * self.cfg.histogram_bins
        if histograms is None and self.cfg.use_histogram:
            raise ValueError("histograms: required, the condition uses them (condition.use_histogram)")
        if histograms is not None and histograms.shape != (*poses.shape[:2], bins3):
            raise ValueError(
                f"histograms: expected shape {(*poses.shape[:2], bins3)} to match poses, got {tuple(histograms.shape)}"
            )
        parts = []
        if self.cfg.use_pose:
            parts.append(fourier_encode(self.pose_numbers(poses), self.cfg.frequencies))
        if self.cfg.use_histogram:
            # Each channel's bins sum to 1; scaling by `bins` brings the entries to order 1 like the pose part.
            parts.append(histograms * self.cfg.histogram_bins)
        return self.mlp(torch.cat(parts, dim=-1))
