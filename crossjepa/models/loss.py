"""CrossJEPA objective: predicted vs teacher view embeddings, in per-dimension standardised space."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validate import check_choice

LOSS_KINDS = ("smooth_l1", "mse", "cosine")


def standardize(target: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(target - mean) / std per dimension, in float32 (targets arrive as fp16 from the cache)."""
    return (target.float() - mean.float()) / std.float().clamp_min(eps)


def crossjepa_loss(
    e_hat: torch.Tensor,
    target: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    kind: str = "smooth_l1",
    beta: float = 1.0,
) -> torch.Tensor:
    """Scalar loss between predictions and teacher embeddings, both (..., D).

    The predictor is trained to output STANDARDISED embeddings directly: `target` is standardised with the
    cache statistics `mean`/`std` (D,), so every teacher dimension weighs the same, and `e_hat` is compared
    as is. To recover teacher-space embeddings use `e_hat * std + mean`.
    kind: "smooth_l1" (Huber with `beta`), "mse", or "cosine" (1 - cosine similarity, mean over views).
    """
    check_choice("kind", kind, LOSS_KINDS)
    if e_hat.shape != target.shape:
        raise ValueError(f"target: expected shape {tuple(e_hat.shape)} to match e_hat, got {tuple(target.shape)}")
    d = e_hat.shape[-1]
    if mean.shape != (d,) or std.shape != (d,):
        raise ValueError(f"mean/std: expected shape ({d},), got {tuple(mean.shape)} and {tuple(std.shape)}")
    pred = e_hat.float()
    goal = standardize(target, mean, std)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, goal, beta=beta)
    if kind == "mse":
        return F.mse_loss(pred, goal)
    return (1.0 - F.cosine_similarity(pred, goal, dim=-1)).mean()
