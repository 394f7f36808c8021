"""One object per file: .npy, .xyz/.txt, .pcd, .ply (points or mesh), .off (mesh) -> an (N, 3) point array."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import corrupt
from .off import read_off
from .pcd import read_pcd
from .ply import read_ply
from .surface import sample_surface

EXTENSIONS = (".off", ".ply", ".pcd", ".npy", ".xyz", ".txt")


def read_text_points(path) -> np.ndarray:
    """Rows of numbers separated by spaces or commas ('x y z ...' or 'x,y,z,nx,ny,nz'), all rows the same width."""
    data = Path(path).read_bytes().replace(b",", b" ")
    first = next((ln for ln in data.split(b"\n") if ln.strip()), b"")
    width = len(first.split())
    try:
        values = np.array(data.split(), dtype=np.float64)
    except ValueError as e:
        raise corrupt(path, f"bad number ({e})") from None
    if width < 3 or values.size % width:
        raise corrupt(path, f"expected rows of >= 3 numbers, all as wide as the first ({width})")
    return values.reshape(-1, width)


def read_npy(path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise corrupt(path, f"unreadable .npy ({e})") from None
    if array.ndim != 2 or array.shape[1] < 3:
        raise corrupt(path, f"expected an (N, >=3) array, got shape {array.shape}")
    return array


def read_cloud_file(path, mesh_points: int, rng_key) -> np.ndarray:
    """Points of one file; meshes (.off, .ply with faces) are sampled to mesh_points points with a generator
    seeded by rng_key (a sequence of ints), so a given object always gets the same samples."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".pcd":
        return read_pcd(path)
    if ext == ".npy":
        return read_npy(path)
    if ext in (".xyz", ".txt"):
        return read_text_points(path)
    if ext in (".off", ".ply"):
        vertices, triangles = read_off(path) if ext == ".off" else read_ply(path)
        if triangles is None or not len(triangles):
            return vertices
        return sample_surface(vertices, triangles, mesh_points, np.random.default_rng(list(rng_key)), path)
    raise ValueError(f"{path}: unsupported point file extension {ext!r} (expected one of {', '.join(EXTENSIONS)})")
