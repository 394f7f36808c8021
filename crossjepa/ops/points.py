"""Public point ops: validate, then run the compiled kernel for the device or the torch reference.

Every value a kernel indexes with is validated here (lengths, start, k, num_samples) or built here (default
lengths, knn's indices fed to the gather), so the kernels are called with check_values=False: their own
checks of those values would copy them to the host, a sync per op on CUDA, and find nothing new."""

from __future__ import annotations

import torch

from crossjepa.ops import reference
from crossjepa.ops.argument_checks import normalize_fps, normalize_group, normalize_knn
from crossjepa.ops.dispatch import extension_for


def farthest_point_sample(
    points, num_samples, start_index=0, *, lengths=None, generator=None, check_finite=True
) -> torch.Tensor:
    """Farthest-point sampling: indices (B, num_samples) int64 of points chosen from each cloud.

    points: (B, N, 3) float32/float16/bfloat16 on any device (distances are computed in float32).
    start_index: an int, a LongTensor (B,) (one start per cloud), or "random" (drawn with ``generator``).
    lengths: optional (B,) integer tensor; cloud b uses only its first ``lengths[b]`` points.
    Ties go to the lowest index among points not yet chosen, so the indices are unique
    (num_samples <= N, or <= the smallest length).
    check_finite: set False to skip the NaN/Inf scan of ``points`` (faster; garbage in, garbage out).
    """
    points, lengths, start, num_samples = normalize_fps(
        points, num_samples, start_index, lengths, generator, check_finite
    )
    if points.shape[0] == 0:
        return torch.empty(0, num_samples, dtype=torch.int64, device=points.device)
    ext = extension_for("farthest_point_sample", points.device)
    if ext is None:
        return reference.fps_impl(points, lengths, start, num_samples)
    return ext.fps(points, lengths, start, num_samples, check_values=False)


def _knn(queries, points, lengths, k, ext):
    if queries.shape[0] == 0 or queries.shape[1] == 0:
        shape = (queries.shape[0], queries.shape[1], k)
        return (
            torch.empty(shape, dtype=torch.float32, device=points.device),
            torch.empty(shape, dtype=torch.int64, device=points.device),
        )
    if ext is None:
        return reference.knn_impl(queries, points, lengths, k)
    return tuple(ext.knn(queries, points, lengths, k, check_values=False))


def knn(queries, points, k, *, lengths=None, check_finite=True):
    """k nearest neighbours of each query among the points of the same cloud.

    queries: (B, M, 3), points: (B, N, 3), same dtype (float32/float16/bfloat16) and device; 1 <= k <= N.
    lengths: optional (B,) integer tensor; only the first ``lengths[b]`` points of cloud b are candidates.
    Returns (sq_dists (B, M, k) float32 ascending, indices (B, M, k) int64); ties go to the lower index.
    The distances are not differentiable (use :func:`group` for differentiable neighbourhoods).
    """
    queries, points, lengths, k = normalize_knn(queries, points, k, lengths, check_finite)
    return _knn(queries, points, lengths, k, extension_for("knn", points.device))


class _GroupGather(torch.autograd.Function):
    """points[idx] - centers with the compiled gather forward and a scatter-add backward."""

    @staticmethod
    def forward(ctx, points, centers, idx, ext):
        ctx.save_for_backward(idx)
        ctx.num_points = points.shape[1]
        return ext.group_gather(points.contiguous(), centers.contiguous(), idx, check_values=False)

    @staticmethod
    def backward(ctx, grad):
        (idx,) = ctx.saved_tensors
        grad_points = grad_centers = None
        if ctx.needs_input_grad[0]:
            batch, m, k = idx.shape
            flat_grad = grad.reshape(batch, m * k, 3).float()
            flat_idx = idx.reshape(batch, m * k, 1).expand(-1, -1, 3)
            acc = torch.zeros(batch, ctx.num_points, 3, dtype=torch.float32, device=grad.device)
            grad_points = acc.scatter_add_(1, flat_idx, flat_grad).to(grad.dtype)
        if ctx.needs_input_grad[1]:
            grad_centers = -grad.sum(dim=2)
        return grad_points, grad_centers, None, None


def group(points, centers, k, *, check_finite=True):
    """Neighbourhoods of the k nearest points of each center, centred on it.

    points: (B, N, 3), centers: (B, M, 3), same dtype and device; 1 <= k <= N.
    Returns (neighbourhoods (B, M, k, 3) in points.dtype, differentiable w.r.t. points and centers,
    indices (B, M, k) int64 as returned by :func:`knn`).
    """
    points, centers, k = normalize_group(points, centers, k, check_finite)
    ext = extension_for("group", points.device)
    lengths = torch.full((points.shape[0],), points.shape[1], dtype=torch.int64, device=points.device)
    _, idx = _knn(centers.detach().contiguous(), points.detach().contiguous(), lengths, k, ext)
    if ext is None or idx.numel() == 0:
        return reference.gather_centered(points, centers, idx), idx
    return _GroupGather.apply(points, centers, idx, ext), idx
