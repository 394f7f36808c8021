"""Meshes to points: fan triangulation, triangle-strip triangulation and area-weighted uniform surface sampling
(numpy, vectorised)."""

from __future__ import annotations

import numpy as np

from ..base import corrupt


def _indices(poly, path) -> np.ndarray:
    """Face indices as int64; ascii readers hand over floats, which must be whole numbers (a fractional or NaN
    index is a damaged file, never something to truncate)."""
    poly = np.asarray(poly)
    if poly.dtype.kind == "f":
        if not np.isfinite(poly).all() or (poly != np.floor(poly)).any() or np.abs(poly).max(initial=0) > 2**62:
            raise corrupt(path, "a face index is not an integer")
    return poly.astype(np.int64)


def _check_range(tris: np.ndarray, num_vertices: int, path) -> np.ndarray:
    if tris.size and (tris.min() < 0 or tris.max() >= num_vertices):
        raise corrupt(path, f"face index out of range for {num_vertices} vertices")
    return tris


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
        poly = _indices(poly, path)
        corners = poly.shape[1] if poly.ndim == 2 else 0
        if corners < 3:
            continue
        k = np.arange(1, corners - 1)
        tris.append(np.stack([poly[:, np.zeros_like(k)], poly[:, k], poly[:, k + 1]], axis=-1).reshape(-1, 3))
    tris = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
    return _check_range(tris, num_vertices, path)


def triangulate_strips(strips, num_vertices: int, path) -> np.ndarray:
    """Triangle strips (PLY ``tristrips``: index lists where -1 restarts the strip) -> triangles int64 (T, 3).
    Triangle j of a strip is (s[j], s[j+1], s[j+2]), every second one flipped to keep the winding; triangles
    with a repeated corner (the strip's stitching) are dropped."""
    tris = []
    for strip in strips:
        strip = _indices(strip, path).reshape(-1)
        cuts = np.flatnonzero(strip == -1)
        for part in np.split(strip, cuts):
            part = part[part != -1]
            if len(part) < 3:
                continue
            a, b, c = part[:-2], part[1:-1], part[2:]
            odd = (np.arange(len(a)) % 2).astype(bool)
            t = np.stack([np.where(odd, b, a), np.where(odd, a, b), c], axis=1)
            tris.append(t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])])
    tris = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
    return _check_range(tris, num_vertices, path)


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, n: int, rng: np.random.Generator, path) -> np.ndarray:
    """n points uniform on the surface: triangles drawn with probability proportional to area, then a uniform
    point inside each (sqrt-warped barycentric coordinates). Deterministic for a given generator state."""
    corners = vertices[triangles]  # (T, 3, 3)
    with np.errstate(over="ignore", invalid="ignore"):  # huge or NaN coordinates: caught by the check below
        area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
        cdf = np.cumsum(area)
    if not cdf.size or not np.isfinite(cdf[-1]) or cdf[-1] <= 0:
        raise ValueError(f"{path}: mesh has no finite surface area to sample points from")
    pick = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    a, b, c = 1.0 - s, s * (1.0 - r2), s * r2
    tri = corners[pick]
    return a[:, None] * tri[:, 0] + b[:, None] * tri[:, 1] + c[:, None] * tri[:, 2]
