"""Mesh formats read through trimesh (an optional extra: ``pip install 'crossjepa[mesh]'``): .obj (ShapeNetCore),
.glb/.gltf (Objaverse), .stl (scans, printed objects).

A file is loaded as a scene and flattened: every geometry placed by the scene graph, with its node's transform
applied, in one vertex/triangle array (sampled like .off/.ply meshes by the caller). Files with no faces at all
give their points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..base import corrupt

EXTENSIONS = (".obj", ".stl", ".glb", ".gltf")


def _trimesh(path):
    try:
        import trimesh
    except ImportError:
        raise ValueError(
            f"{path}: reading {Path(path).suffix} files needs trimesh: "
            f"pip install 'crossjepa[mesh]' (or pip install trimesh)"
        ) from None
    return trimesh


def read_mesh(path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(vertices float64 (N, 3), triangles int64 (T, 3), or None when the file holds points only)."""
    path = Path(path)
    trimesh = _trimesh(path)
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    # trimesh raises whatever its parsers meet (KeyError, IndexError, struct.error, ...): one line, naming the file
    except Exception as e:  # noqa: BLE001
        raise corrupt(path, f"trimesh cannot read it ({type(e).__name__}: {e})") from None
    verts, tris, points, offset = [], [], [], 0
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry.get(name)
        vertices = np.asarray(getattr(geometry, "vertices", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
        placed = vertices @ np.asarray(transform, dtype=np.float64)[:3, :3].T + np.asarray(transform)[:3, 3]
        faces = getattr(geometry, "faces", None)
        if faces is not None and len(faces):
            verts.append(placed)
            tris.append(np.asarray(faces, dtype=np.int64).reshape(-1, 3) + offset)
            offset += len(placed)
        else:
            points.append(placed)
    if tris:
        vertices, triangles = np.concatenate(verts), np.concatenate(tris)
        if triangles.min() < 0 or triangles.max() >= len(vertices):
            raise corrupt(path, "face index out of range")
        return vertices, triangles
    if points and sum(map(len, points)):
        return np.concatenate(points), None
    raise ValueError(f"{path}: no faces or points in the file")
