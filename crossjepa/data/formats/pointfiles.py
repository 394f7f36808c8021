"""One object per file: .npy, .xyz/.txt, .pcd, .ply (points or mesh), .off (mesh), and through trimesh (the
[mesh] extra) .obj/.stl/.glb/.gltf meshes -> an (N, 3) point array."""

from __future__ import annotations

from pathlib import Path
from tokenize import TokenError

import numpy as np

from ..base import corrupt
from . import meshes
from .off import read_off
from .pcd import read_pcd
from .ply import read_ply
from .surface import sample_surface

EXTENSIONS = (".off", ".ply", ".pcd", ".npy", ".xyz", ".txt") + meshes.EXTENSIONS


def read_text_points(path) -> np.ndarray:
    """Rows of numbers separated by spaces or commas ('x y z ...' or 'x,y,z,nx,ny,nz'), one point per line, all
    rows as wide as the first (checked row by row, so a split or merged row is an error, not a shifted cloud)."""
    rows = [ln for ln in Path(path).read_bytes().replace(b",", b" ").split(b"\n") if ln.strip()]
    widths = np.fromiter((len(r.split()) for r in rows), np.int64, len(rows))
    if not len(rows) or widths[0] < 3:
        raise corrupt(path, "expected rows of >= 3 numbers")
    bad = np.flatnonzero(widths != widths[0])
    if bad.size:
        raise corrupt(path, f"row {bad[0] + 1} has {widths[bad[0]]} numbers, the first row {widths[0]}")
    try:
        return np.array(b" ".join(rows).split(), dtype=np.float64).reshape(len(rows), -1)
    except ValueError as e:
        raise corrupt(path, f"bad number ({e})") from None


def read_npy(path) -> np.ndarray:
    try:  # memory-mapped first: a header declaring more data than the file holds fails before any allocation
        array = np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    # a damaged header reaches numpy's header parser, which can also raise tokenize/syntax/type errors
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, KeyError, OverflowError, TokenError) as e:
        raise corrupt(path, f"unreadable .npy ({e})") from None
    if array.ndim != 2 or array.shape[1] < 3 or array.dtype.kind not in "fiu":
        raise corrupt(path, f"expected an (N, >=3) array of numbers, got shape {array.shape} {array.dtype}")
    return array


def read_cloud_file(path, mesh_points: int, rng_key) -> np.ndarray:
    """Points of one file; meshes (.off, .ply with faces) are sampled to mesh_points points with a generator
    seeded by rng_key (a sequence of ints), so a given object always gets the same samples."""
    points = _read_cloud_file(Path(path), mesh_points, rng_key)
    if not len(points):
        raise ValueError(f"{path}: no points (every point was missing or the file declares none)")
    return points


def _read_cloud_file(path: Path, mesh_points: int, rng_key) -> np.ndarray:
    ext = path.suffix.lower()
    if ext == ".pcd":
        return read_pcd(path)
    if ext == ".npy":
        return read_npy(path)
    if ext in (".xyz", ".txt"):
        return read_text_points(path)
    if ext in (".off", ".ply") + meshes.EXTENSIONS:
        reader = {".off": read_off, ".ply": read_ply}.get(ext, meshes.read_mesh)
        vertices, triangles = reader(path)
        if triangles is None:  # the file declares no faces: a point cloud
            return vertices
        if not len(triangles):  # readers refuse this already; a mesh never turns into its vertex cloud
            raise ValueError(f"{path}: a mesh with no triangles")
        return sample_surface(vertices, triangles, mesh_points, np.random.default_rng(list(rng_key)), path)
    raise ValueError(f"{path}: unsupported point file extension {ext!r} (known: {', '.join(EXTENSIONS)})")
