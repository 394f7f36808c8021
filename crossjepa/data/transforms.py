"""Augmentation of batched point clouds, deterministic from a torch.Generator.

A batch is transformed as ``points @ (R @ diag(s)).T + t + noise``: anisotropic scale s, rotation R,
translation t, clipped Gaussian jitter, all drawn from one generator in a fixed order, on the generator's
device. The same generator state gives the same batch.

Keeping the 2D-3D correspondence (the teacher's embedding of a view must still describe the points):
- rotation: points @ R.T is matched by the camera ``R4 @ c2w`` (R4 = [[R, 0], [0, 1]]), see rotate_poses. The
  object is seen exactly as before, so the cached embedding stays valid. On by default (about the world up axis,
  y; "so3" for any orientation).
- jitter: a few millimetres of noise on a unit-sphere cloud does not change what a view shows. On by default.
- translation t and uniform scale would keep the view only if the camera centre moved with the object
  (c2w -> [[R, s R c + t]] for a camera centre c), which the loader does not report; anisotropic scale changes
  the silhouette itself, so no camera can match it. Both are therefore off by default: turn them on for
  point-only training (classification fine-tuning), not for cross-modal pretraining against cached views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from ..validate import check_choice, check_int, check_number, check_positive

ROTATIONS = ("up", "so3", "none")


@dataclass(frozen=True)
class AugmentConfig:
    rotation: str = "up"  # "up": about axis `up_axis`; "so3": uniform over all rotations; "none"
    up_axis: int = 1  # 0 = x, 1 = y (the world up of our datasets and renderer), 2 = z
    jitter_sigma: float = 0.01  # std of the per-point Gaussian noise (0 disables it)
    jitter_clip: float = 0.05  # the noise is clipped to [-clip, clip]
    scale: Optional[Tuple[float, float]] = None  # per-axis factor range (lo, hi); breaks correspondence
    translate: float = 0.0  # per-axis shift drawn from [-translate, translate]; breaks correspondence

    def __post_init__(self):
        check_choice("rotation", self.rotation, ROTATIONS)
        check_int("up_axis", self.up_axis, 0, 2)
        check_number("jitter_sigma", self.jitter_sigma, 0)
        check_positive("jitter_clip", self.jitter_clip)
        if self.scale is not None and not (len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1]):
            raise ValueError(f"scale: expected None or (lo, hi) with 0 < lo <= hi, got {self.scale!r}")
        check_number("translate", self.translate, 0)


@dataclass
class Augmentation:
    """One batch's draw: rotation (B,3,3), scale (B,3), translation (B,3), noise (B,P,3)."""

    rotation: torch.Tensor
    scale: torch.Tensor
    translation: torch.Tensor
    noise: torch.Tensor

    @property
    def matrix(self) -> torch.Tensor:
        """R @ diag(s), (B, 3, 3): the linear part applied to column vectors."""
        return self.rotation * self.scale[:, None, :]


def _axis_rotation(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """Right-handed rotations (B, 3, 3) by `angle` (B,) about coordinate axis `axis`."""
    c, s = angle.cos(), angle.sin()
    i, j = (axis + 1) % 3, (axis + 2) % 3
    r = torch.zeros(angle.shape[0], 3, 3, dtype=angle.dtype, device=angle.device)
    r[:, axis, axis] = 1.0
    r[:, i, i], r[:, j, j] = c, c
    r[:, i, j], r[:, j, i] = -s, s
    return r


def _quaternion_rotation(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (B, 4) as (w, x, y, z) -> rotation matrices (B, 3, 3)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        (
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ),
        dim=-1,
    ).view(-1, 3, 3)


def random_rotation(batch_size: int, generator: torch.Generator, mode: str = "up", up_axis: int = 1) -> torch.Tensor:
    """Random rotations (B, 3, 3) float32 on the generator's device: uniform angle about `up_axis` ("up"),
    uniform over SO(3) ("so3", from a normalised Gaussian quaternion), or the identity ("none")."""
    check_choice("mode", mode, ROTATIONS)
    device = generator.device
    if mode == "up":
        angle = torch.rand(batch_size, generator=generator, device=device) * (2 * math.pi)
        return _axis_rotation(angle, up_axis)
    if mode == "so3":
        q = torch.randn(batch_size, 4, generator=generator, device=device)
        return _quaternion_rotation(torch.nn.functional.normalize(q, dim=-1))
    return torch.eye(3, device=device).expand(batch_size, 3, 3).contiguous()


def draw_augmentation(
    batch_size: int, num_points: int, generator: torch.Generator, config: AugmentConfig
) -> Augmentation:
    """Draw rotation, scale, translation and jitter, in that order, from `generator` (on its device)."""
    device = generator.device
    rotation = random_rotation(batch_size, generator, config.rotation, config.up_axis)
    scale = torch.ones(batch_size, 3, device=device)
    if config.scale is not None:
        lo, hi = config.scale
        scale = lo + (hi - lo) * torch.rand(batch_size, 3, generator=generator, device=device)
    translation = torch.zeros(batch_size, 3, device=device)
    if config.translate > 0:
        translation = (2 * torch.rand(batch_size, 3, generator=generator, device=device) - 1) * config.translate
    if config.jitter_sigma > 0:
        noise = torch.randn(batch_size, num_points, 3, generator=generator, device=device).mul_(config.jitter_sigma)
        noise = noise.clamp_(-config.jitter_clip, config.jitter_clip)
    else:
        noise = torch.zeros(batch_size, num_points, 3, device=device)
    return Augmentation(rotation, scale, translation, noise)


def apply_augmentation(points: torch.Tensor, aug: Augmentation) -> torch.Tensor:
    """points (B, P, 3) float32 -> points @ (R diag(s)).T + t + noise."""
    return torch.baddbmm(aug.translation[:, None, :] + aug.noise, points, aug.matrix.transpose(1, 2))


def augment(
    points: torch.Tensor, generator: torch.Generator, config: AugmentConfig = AugmentConfig()
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch (B, P, 3); returns (points, rotation (B, 3, 3)) for rotating the camera poses too."""
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points: expected shape (B, P, 3), got {tuple(points.shape)}")
    if points.device != generator.device:
        raise ValueError(f"generator: expected one on {points.device}, got one on {generator.device}")
    aug = draw_augmentation(points.shape[0], points.shape[1], generator, config)
    return apply_augmentation(points.float(), aug), aug.rotation


def rotate_poses(poses: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Camera-to-world poses (B, V, 4, 4) or (V, 4, 4) seen by rotated points -> R4 @ c2w, (B, V, 4, 4)."""
    if poses.shape[-2:] != (4, 4) or poses.dim() not in (3, 4):
        raise ValueError(f"poses: expected shape (V, 4, 4) or (B, V, 4, 4), got {tuple(poses.shape)}")
    if rotation.dim() != 3 or rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation: expected shape (B, 3, 3), got {tuple(rotation.shape)}")
    if poses.dim() == 3:
        poses = poses.unsqueeze(0).expand(rotation.shape[0], -1, -1, -1)
    rotation = rotation.to(device=poses.device, dtype=poses.dtype)
    out = poses.clone()
    out[..., :3, :] = rotation[:, None] @ poses[..., :3, :]
    return out
