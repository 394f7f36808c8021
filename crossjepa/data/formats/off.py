"""OFF meshes (also COFF/NOFF/CNOFF), including ModelNet's files whose counts follow 'OFF' on the same line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..base import corrupt
from .surface import triangulate


def read_off(path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(vertices float64 (N, 3), triangles int64 (T, 3), or None when the file has no faces)."""
    path = Path(path)
    text = path.read_bytes().decode("ascii", errors="replace")
    lines = [ln.split("#", 1)[0].strip() for ln in text.split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].upper().split()[0].rstrip("0123456789").endswith("OFF"):
        raise corrupt(path, "not an OFF file (no OFF header)")
    head = lines[0].split()
    keyword_len = len(head[0]) - len(head[0].lstrip("CNSTOFcnstof"))
    counts = ([head[0][keyword_len:]] if head[0][keyword_len:] else []) + head[1:]
    start = 1
    if not counts:
        counts, start = lines[1].split(), 2
    try:
        nv, nf = int(counts[0]), int(counts[1])
        vertices = np.array(" ".join(lines[start:start + nv]).split(), dtype=np.float64)
        if nv == 0 or vertices.size % nv or len(lines) < start + nv + nf:
            raise ValueError(f"expected {nv} vertex and {nf} face lines")
        vertices = vertices.reshape(nv, -1)[:, :3]
        rows = [ln.split() for ln in lines[start + nv:start + nv + nf]]
        widths = {len(r) for r in rows}
        if len(widths) == 1:  # uniform rows (all triangles, maybe with colours): one array
            table = np.array(rows, dtype=np.float64).astype(np.int64) if nf else np.zeros((0, 4), np.int64)
            n = int(table[0, 0]) if nf else 0
            if nf and (table[:, 0] != n).any():
                raise ValueError("face rows have inconsistent corner counts")
            polygons = table[:, 1:1 + n]
        else:
            polygons = [np.array(r[1:1 + int(r[0])], dtype=np.int64) for r in rows]
    except (IndexError, ValueError) as e:
        raise corrupt(path, f"bad OFF data ({e})") from None
    if nf == 0:
        return vertices, None
    return vertices, triangulate(polygons, nv, path)
