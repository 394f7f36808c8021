"""OFF meshes (also COFF/NOFF/CNOFF/STOFF), including ModelNet's files whose counts are glued to the keyword
('OFF3514 3546 0').

After the header and the vertex rows, each face is what the format says it is: a corner count n, then n vertex
indices, then optional colour values up to the end of the line holding the last index. A face may span several
lines (libigl writes such files), so the reader follows the count, not the line. A file must end after its
declared faces: anything left means the rows did not match the counts, which is an error, never a guess.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..base import corrupt
from .surface import triangulate

# [ST][C][N]OFF; 4OFF (homogeneous) and nOFF (any dimension) are refused by name
_KEYWORD = re.compile(r"^(?P<prefix>[A-Za-z0-9]*?)OFF(?P<rest>.*)$", re.IGNORECASE)
_PREFIXES = {"", "C", "N", "CN", "NC", "ST", "STC", "STN", "STCN", "STNC"}


def _lines(path: Path):
    """Non-empty lines without comments, and their 1-based line numbers."""
    text = path.read_bytes().decode("ascii", errors="replace")
    rows, numbers = [], []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append(line)
            numbers.append(number)
    return rows, numbers


def _counts(rows, path) -> tuple[int, int, int]:
    """(vertex count, face count, index of the first vertex row)."""
    head = rows[0].split() if rows else [""]
    match = _KEYWORD.match(head[0])
    if match is None:
        raise corrupt(path, "not an OFF file (no OFF header)")
    if match["prefix"].upper() not in _PREFIXES:
        raise ValueError(f"{path}: unsupported OFF variant {head[0]!r} (expected OFF, COFF, NOFF, CNOFF or STOFF)")
    counts, start = ([match["rest"]] if match["rest"] else []) + head[1:], 1
    if counts and counts[0].upper() == "BINARY":
        raise ValueError(f"{path}: binary OFF is not supported (expected an ascii OFF file)")
    if not counts:
        if len(rows) < 2:
            raise corrupt(path, "OFF header has no vertex/face counts")
        counts, start = rows[1].split(), 2
    try:
        if not 2 <= len(counts) <= 3:
            raise ValueError
        nv, nf = int(counts[0]), int(counts[1])
        if nv < 0 or nf < 0:
            raise ValueError
    except ValueError:
        raise corrupt(path, f"bad OFF counts {' '.join(counts)!r} (expected 'vertices faces [edges]')") from None
    return nv, nf, start


def _vertices(block, lines, path) -> np.ndarray:
    widths = np.fromiter((len(r.split()) for r in block), np.int64, len(block))
    short = np.flatnonzero(widths < 3)
    if short.size:
        raise corrupt(path, f"line {lines[short[0]]}: a vertex row needs x y z, has {widths[short[0]]} values")
    try:
        if len(block) and (widths == widths[0]).all():
            return np.array(" ".join(block).split(), dtype=np.float64).reshape(len(block), -1)[:, :3]
        return np.array([r.split()[:3] for r in block], dtype=np.float64).reshape(-1, 3)
    except ValueError as e:
        raise corrupt(path, f"bad vertex value ({e})") from None


def _count(token: str, path, line) -> int:
    try:
        n = int(token)
    except ValueError:
        raise corrupt(path, f"line {line}: expected a face's corner count, found {token!r}") from None
    if n < 0:
        raise corrupt(path, f"line {line}: negative corner count {n}")
    return n


def _faces_one_per_line(block):
    """All faces as one (F, n) table when each line holds a whole face of the same size, else None."""
    widths = {len(r.split()) for r in block}
    if len(widths) != 1:
        return None
    try:
        table = np.array(" ".join(block).split(), dtype=np.float64).reshape(len(block), -1)
    except ValueError:
        return None
    n = table[0, 0]
    if not 0 <= n <= table.shape[1] - 1 or n != int(n) or (table[:, 0] != n).any():
        return None
    return table[:, 1 : 1 + int(n)]


def _faces_by_count(rows, lines, pos, nf, path):
    """Faces read by their counts, each possibly spanning lines. Returns (list of index arrays, next row)."""
    faces = []
    for f in range(nf):
        if pos >= len(rows):
            raise corrupt(path, f"expected {nf} faces, the file ends after {f}")
        tokens, first = rows[pos].split(), lines[pos]
        n = _count(tokens[0], path, first)
        pos += 1
        while len(tokens) < n + 1:  # the face continues on the next line
            if pos >= len(rows):
                raise corrupt(path, f"line {first}: a face of {n} corners, the file ends before its last index")
            tokens += rows[pos].split()
            pos += 1
        try:
            faces.append(np.array(tokens[1 : 1 + n], dtype=np.float64))  # the rest of the line: colour
        except ValueError:
            raise corrupt(path, f"line {first}: bad vertex index in a face") from None
    return faces, pos


def read_off(path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(vertices float64 (N, 3), triangles int64 (T, 3), or None when the file declares no faces)."""
    path = Path(path)
    rows, lines = _lines(path)
    nv, nf, start = _counts(rows, path)
    if len(rows) < start + nv:
        raise corrupt(path, f"expected {nv} vertex rows, found {len(rows) - start}")
    vertices = _vertices(rows[start : start + nv], lines[start : start + nv], path)
    pos = start + nv
    polygons = _faces_one_per_line(rows[pos : pos + nf]) if len(rows) == pos + nf and nf else None
    if polygons is not None:
        pos += nf
    else:
        polygons, pos = _faces_by_count(rows, lines, pos, nf, path)
    if pos < len(rows):
        raise corrupt(path, f"line {lines[pos]}: data after the {nf} declared faces (rows do not match the counts)")
    if nf == 0:
        return vertices, None
    triangles = triangulate(polygons, nv, path)
    if not len(triangles):
        raise corrupt(path, f"declares {nf} faces but none has 3 or more corners")
    return vertices, triangles
