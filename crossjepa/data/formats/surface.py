"""Meshes to points: fan triangulation and area-weighted uniform surface sampling (numpy, vectorised)."""

from __future__ import annotations

import numpy as np

from ..base import corrupt


def triangulate(polygons, num_vertices: int, path) -> np.ndarray:
    """Polygons as one (F, L) array or a list of (L_i,) arrays -> triangles int64 (T, 3), fanned from corner 0.
    Polygons with fewer than 3 corners (edges, points) are dropped."""
    if isinstance(polygons, np.ndarray):
        groups = [polygons]
    else:
        by_len = {}
        for p in polygons:
            by_len.setdefault(len(p), []).append(p)
        groups = [np.stack(g) for g in by_len.values()]
    tris = []
    for poly in groups:
        poly = np.asarray(poly).astype(np.int64)
        corners = poly.shape[1] if poly.ndim == 2 else 0
        if corners < 3:
            continue
        k = np.arange(1, corners - 1)
        tris.append(np.stack([poly[:, np.zeros_like(k)], poly[:, k], poly[:, k + 1]], axis=-1).reshape(-1, 3))
    tris = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
    if tris.size and (tris.min() < 0 or tris.max() >= num_vertices):
        raise corrupt(path, f"face index out of range for {num_vertices} vertices")
    return tris


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, n: int, rng: np.random.Generator,
                   path) -> np.ndarray:
    """n points uniform on the surface: triangles drawn with probability proportional to area, then a uniform
    point inside each (sqrt-warped barycentric coordinates). Deterministic for a given generator state."""
    corners = vertices[triangles]  # (T, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    cdf = np.cumsum(area)
    if not cdf.size or not np.isfinite(cdf[-1]) or cdf[-1] <= 0:
        raise ValueError(f"{path}: mesh has no surface area to sample points from")
    pick = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    a, b, c = 1.0 - s, s * (1.0 - r2), s * r2
    tri = corners[pick]
    return a[:, None] * tri[:, 0] + b[:, None] * tri[:, 1] + c[:, None] * tri[:, 2]
