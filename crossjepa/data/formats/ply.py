"""PLY files (ascii, binary_little_endian, binary_big_endian): vertices, and faces when the file is a mesh.

Fast path: scalar-only elements are one np.frombuffer (binary) or one reshape (ascii); a list property is read
the same way when every row has the length of the first (all triangles, all quads); mixed polygons fall back
to a row loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..base import CorruptFileError, corrupt
from .surface import triangulate

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_FACE_LISTS = ("vertex_indices", "vertex_index")


def _header(data: bytes, path):
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise corrupt(path, "not a PLY file (no 'ply' magic or 'end_header')")
    body = data.find(b"\n", end) + 1
    fmt, elements = None, []
    for line in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property" and words[1] == "list":
                elements[-1][2].append((words[4], _TYPES[words[2]], _TYPES[words[3]]))
            elif words[0] == "property":
                elements[-1][2].append((words[2], _TYPES[words[1]], None))
        except (IndexError, KeyError, ValueError):
            raise corrupt(path, f"bad PLY header line {line!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise corrupt(path, f"unsupported PLY format {fmt!r}")
    return fmt, elements, body


def _row_dtype(props, lengths, order):
    fields = []
    for (name, t, item), n in zip(props, lengths):
        if item is None:
            fields.append((name, order + t))
        else:
            fields += [(name + "#n", order + t), (name, order + item, (n,))]
    return np.dtype(fields)


def _binary_element(data, pos, count, props, order, path):
    """Returns ({property: array}, new position). List properties give (count, L) arrays or lists of rows."""
    lengths, probe = [], pos
    for name, t, item in props:  # list lengths of the first row
        if item is None:
            lengths.append(0)
            probe += np.dtype(t).itemsize
        else:
            n = int(np.frombuffer(data, order + t, 1, probe)[0]) if count else 0
            lengths.append(n)
            probe += np.dtype(t).itemsize + n * np.dtype(item).itemsize
    dtype = _row_dtype(props, lengths, order)
    lists = [p for p in props if p[2] is not None]
    if len(data) - pos >= count * dtype.itemsize:
        rows = np.frombuffer(data, dtype, count, pos)
        if all((rows[name + "#n"] == n).all() for (name, _, item), n in zip(props, lengths) if item is not None):
            return {p[0]: rows[p[0]] for p in props}, pos + count * dtype.itemsize
    elif not lists:
        raise corrupt(path, f"truncated PLY data ({count} rows of {dtype.itemsize} bytes do not fit)")
    out = {p[0]: [] for p in lists}
    for _ in range(count):  # mixed list lengths: row by row
        for name, t, item in props:
            n = int(np.frombuffer(data, order + t, 1, pos)[0]) if item is not None else 0
            pos += np.dtype(t).itemsize
            if item is not None:
                out[name].append(np.frombuffer(data, order + item, n, pos))
                pos += n * np.dtype(item).itemsize
        if pos > len(data):
            raise corrupt(path, "truncated PLY list data")
    return out, pos


def _ascii_element(tokens, pos, count, props, path):
    lengths, probe = [], pos
    for name, t, item in props:
        n = int(float(tokens[probe])) if item is not None and count else 0
        lengths.append(n)
        probe += 1 + n if item is not None else 1
    width = probe - pos
    block = tokens[pos:pos + count * width]
    has_lists = any(item is not None for _, _, item in props)
    if len(block) == count * width:
        table = np.array(block, dtype=np.float64).reshape(count, width)
        cols, out, uniform = 0, {}, True
        for (name, t, item), n in zip(props, lengths):
            if item is None:
                out[name] = table[:, cols]
                cols += 1
            else:
                uniform &= bool((table[:, cols] == n).all())
                out[name] = table[:, cols + 1:cols + 1 + n]
                cols += 1 + n
        if uniform:
            return out, pos + count * width
    elif not has_lists:
        raise corrupt(path, "truncated PLY ascii data")
    out = {p[0]: [] for p in props if p[2] is not None}
    for _ in range(count):  # mixed list lengths: row by row
        for name, t, item in props:
            if item is None:
                pos += 1
            else:
                n = int(float(tokens[pos]))
                out[name].append(np.array(tokens[pos + 1:pos + 1 + n], dtype=np.float64))
                pos += 1 + n
    return out, pos


def read_ply(path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(vertices float64 (N, 3), triangles int64 (T, 3) or None for a point cloud)."""
    path = Path(path)
    data = path.read_bytes()
    fmt, elements, pos = _header(data, path)
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    tokens = data[pos:].split() if order is None else None
    pos = 0 if order is None else pos
    found = {}
    try:
        for name, count, props in elements:
            if order is None:
                found[name], pos = _ascii_element(tokens, pos, count, props, path)
            else:
                found[name], pos = _binary_element(data, pos, count, props, order, path)
            if "vertex" in found and "face" in found:
                break
    except CorruptFileError:
        raise
    except (ValueError, IndexError) as e:
        raise corrupt(path, f"bad PLY data ({e})") from None
    vertex = found.get("vertex")
    if vertex is None or not {"x", "y", "z"} <= set(vertex):
        raise ValueError(f"{path}: PLY has no vertex element with x y z properties")
    vertices = np.stack([np.asarray(vertex[a], dtype=np.float64) for a in "xyz"], axis=1)
    face = found.get("face", {})
    key = next((k for k in _FACE_LISTS if k in face), None)
    if key is None or len(face[key]) == 0:
        return vertices, None
    return vertices, triangulate(face[key], len(vertices), path)
