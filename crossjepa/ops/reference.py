"""Plain-torch reference implementations of the point ops (any device, no extension needed).

They define the semantics the C++/CUDA kernels must reproduce exactly:
- squared distances are computed in float32 as ``dx*dx + dy*dy + dz*dz`` (left to right, no FMA);
- FPS starts at ``start[b]``, keeps each point's running minimum distance to the chosen set and picks the
  largest one, ties to the lowest index; chosen points are excluded, so indices are unique;
- kNN sorts by distance ascending, ties to the lower index; points at or beyond ``lengths[b]`` are ignored.
"""

from __future__ import annotations

import torch

from crossjepa.ops.argument_checks import normalize_fps, normalize_group, normalize_knn

# Elements of the (B, chunk, N) distance block the kNN reference materialises at once.
_KNN_BLOCK = 1 << 22


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Float32 squared distances between broadcastable (..., 3) tensors, in the kernels' exact order."""
    diff = a.float() - b.float()
    dx, dy, dz = diff.unbind(-1)
    return dx * dx + dy * dy + dz * dz


@torch.no_grad()
def fps_impl(points: torch.Tensor, lengths: torch.Tensor, start: torch.Tensor, num_samples: int) -> torch.Tensor:
    """FPS on validated inputs: points (B,N,3), lengths (B,) int64, start (B,) int64 -> (B,M) int64."""
    batch, n, _ = points.shape
    device = points.device
    out = torch.empty(batch, num_samples, dtype=torch.int64, device=device)
    if batch == 0:
        return out
    pts = points.float()
    rows = torch.arange(batch, device=device)
    valid = torch.arange(n, device=device) < lengths[:, None]
    # +inf: not yet reached; -inf: padding; -1: already chosen. Neither negative value can win the argmax.
    dist = torch.where(valid, float("inf"), float("-inf"))
    current = start
    for i in range(num_samples):
        out[:, i] = current
        dist[rows, current] = -1.0
        dist = torch.minimum(dist, squared_distances(pts, pts[rows, current][:, None, :]))
        current = dist.argmax(dim=1)  # first maximal index on ties
    return out


@torch.no_grad()
def knn_impl(queries: torch.Tensor, points: torch.Tensor, lengths: torch.Tensor, k: int):
    """kNN on validated inputs -> (sq_dists (B,M,k) float32 ascending, idx (B,M,k) int64)."""
    batch, m, _ = queries.shape
    n = points.shape[1]
    device = points.device
    sq = torch.empty(batch, m, k, dtype=torch.float32, device=device)
    idx = torch.empty(batch, m, k, dtype=torch.int64, device=device)
    padding = (torch.arange(n, device=device) >= lengths[:, None])[:, None, :]
    chunk = max(1, _KNN_BLOCK // max(1, batch * n))
    for s in range(0, m, chunk):
        d = squared_distances(queries[:, s : s + chunk, None, :], points[:, None, :, :])
        d = d.masked_fill(padding, float("inf"))
        values, order = torch.sort(d, dim=-1, stable=True)
        sq[:, s : s + chunk] = values[..., :k]
        idx[:, s : s + chunk] = order[..., :k]
    return sq, idx


def gather_centered(points: torch.Tensor, centers: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points[b, idx[b, m, j]] - centers[b, m] -> (B,M,k,3) in points.dtype; differentiable."""
    batch, m, k = idx.shape
    flat = idx.reshape(batch, m * k, 1).expand(-1, -1, 3)
    neighbours = points.gather(1, flat).reshape(batch, m, k, 3)
    return neighbours - centers.unsqueeze(2)


def farthest_point_sample_reference(
    points, num_samples, start_index=0, *, lengths=None, generator=None, check_finite=True
) -> torch.Tensor:
    """Reference for :func:`crossjepa.ops.farthest_point_sample` (same arguments and result)."""
    points, lengths, start, num_samples = normalize_fps(
        points, num_samples, start_index, lengths, generator, check_finite
    )
    return fps_impl(points, lengths, start, num_samples)


def knn_reference(queries, points, k, *, lengths=None, check_finite=True):
    """Reference for :func:`crossjepa.ops.knn` (same arguments and result)."""
    queries, points, lengths, k = normalize_knn(queries, points, k, lengths, check_finite)
    return knn_impl(queries, points, lengths, k)


def group_reference(points, centers, k, *, check_finite=True):
    """Reference for :func:`crossjepa.ops.group` (same arguments and result)."""
    points, centers, k = normalize_group(points, centers, k, check_finite)
    lengths = torch.full((points.shape[0],), points.shape[1], dtype=torch.int64, device=points.device)
    _, idx = knn_impl(centers, points, lengths, k)
    return gather_centered(points, centers, idx), idx
