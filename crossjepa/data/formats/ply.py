"""PLY files (ascii, binary_little_endian, binary_big_endian): vertices, and triangles when the file is a mesh
(a ``face`` element, or a ``tristrips`` element whose strips are triangulated).

ASCII bodies are read row by row, one element row per line, and every row is checked against the header: a row
with fewer values than its properties need is an error naming the line; a row with more (files that append
colours the header does not declare) is read by its declared properties, and the file gets one warning. Fast
paths: an element whose rows all have the same width and the same list lengths is one numpy reshape (ascii) or
one np.frombuffer (binary); anything else is read row by row. Declared counts are checked against the bytes or
lines the file has before anything is allocated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ..base import CorruptFileError, corrupt
from .surface import triangulate, triangulate_strips

log = logging.getLogger("crossjepa")

_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_INDEX_LISTS = ("vertex_indices", "vertex_index")
_MESH_ELEMENTS = ("face", "tristrips")


def _header(data: bytes, path):
    """(format, [(element, count, [(property, dtype, list item dtype or None)])], body offset, header lines)."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise corrupt(path, "not a PLY file (no 'ply' magic or 'end_header')")
    newline = data.find(b"\n", end)
    body = len(data) if newline < 0 else newline + 1
    fmt, elements = None, []
    for line in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                count = int(words[2])
                if count < 0 or any(e[0] == words[1] for e in elements):
                    raise ValueError
                elements.append((words[1], count, []))
            elif words[0] == "property" and words[1] == "list":
                if _TYPES[words[2]][0] == "f":  # a list length must be an integer type
                    raise ValueError
                elements[-1][2].append((words[4], _TYPES[words[2]], _TYPES[words[3]]))
            elif words[0] == "property":
                elements[-1][2].append((words[2], _TYPES[words[1]], None))
            else:
                raise ValueError
        except (IndexError, KeyError, ValueError):
            raise corrupt(path, f"bad PLY header line {line.strip()!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise corrupt(path, f"unsupported PLY format {fmt!r}")
    for name, _, props in elements:
        names = [p for p, _, _ in props]
        if not names or len(set(names)) != len(names):
            raise corrupt(path, f"PLY element {name!r} has no properties or repeats one ({' '.join(names)})")
    return fmt, elements, body, data[:body].count(b"\n")


# ---- binary ------------------------------------------------------------------------------------------------


def _binary_element(data, pos, name, count, props, order, path):
    """({property: array (count,) or (count, L), or a list of rows for mixed list lengths}, new position)."""
    fixed = sum(np.dtype(t).itemsize for _, t, _ in props)  # bytes per row without list items
    if count * fixed > len(data) - pos:
        raise corrupt(
            path, f"truncated: {count} {name} rows need at least {count * fixed} bytes, found {len(data) - pos}"
        )
    lengths, probe = [], pos
    for _, t, item in props:  # list lengths of the first row, for the one-frombuffer fast path
        n = int(np.frombuffer(data, order + t, 1, probe)[0]) if item is not None and count else 0
        if n < 0:
            raise corrupt(path, f"negative list length {n} in the first {name} row")
        lengths.append(n)
        probe += np.dtype(t).itemsize + (n * np.dtype(item).itemsize if item is not None else 0)
    fields = []
    for (prop, t, item), n in zip(props, lengths):
        fields += [(prop, order + t)] if item is None else [(prop + "#n", order + t), (prop, order + item, (n,))]
    dtype = np.dtype(fields)
    if count * dtype.itemsize <= len(data) - pos:
        rows = np.frombuffer(data, dtype, count, pos)
        if all((rows[p + "#n"] == n).all() for (p, _, item), n in zip(props, lengths) if item is not None):
            return {p: rows[p] for p, _, _ in props}, pos + count * dtype.itemsize
    out = {p: [] for p, _, _ in props}
    for row in range(count):  # mixed list lengths: row by row, every length checked
        for prop, t, item in props:
            size = np.dtype(t).itemsize
            if pos + size > len(data):
                raise corrupt(path, f"truncated in {name} row {row}")
            value = np.frombuffer(data, order + t, 1, pos)[0]
            pos += size
            if item is None:
                out[prop].append(value)
                continue
            n, size = int(value), np.dtype(item).itemsize
            if n < 0 or pos + n * size > len(data):
                raise corrupt(path, f"{name} row {row}: list length {n} does not fit in the file")
            out[prop].append(np.frombuffer(data, order + item, n, pos))
            pos += n * size
    return {p: (np.array(v) if item is None else v) for (p, _, item), v in zip(props, out.values())}, pos


# ---- ascii -------------------------------------------------------------------------------------------------


def _ascii_uniform(block, widths, props):
    """The whole element as one table when every row has the same width and the same list lengths, else None.
    Returns ({property: array}, extra values per row)."""
    width = int(widths[0])
    if (widths != width).any():
        return None
    try:
        table = np.array(b" ".join(block).split(), dtype=np.float64).reshape(len(block), width)
    except ValueError:
        return None  # a bad number: the row loop names its line
    col, out = 0, {}
    for prop, _, item in props:
        if col >= width:
            return None
        if item is None:
            out[prop] = table[:, col]
            col += 1
            continue
        n = table[0, col]
        if not 0 <= n <= width - col - 1 or n != int(n) or not (table[:, col] == n).all():
            return None
        out[prop] = table[:, col + 1 : col + 1 + int(n)]
        col += 1 + int(n)
    return out, width - col


def _ascii_rows(block, lines, name, props, path):
    """Row by row; every row checked. Returns ({property: values}, number of rows with extra values)."""
    out = {p: [] for p, _, _ in props}
    extra = 0
    for tokens, line in zip((r.split() for r in block), lines):
        col = 0
        try:
            for prop, _, item in props:
                if item is None:
                    out[prop].append(float(tokens[col]))
                    col += 1
                    continue
                n = float(tokens[col])
                if not 0 <= n <= len(tokens) - col - 1 or n != int(n):  # range first: int() of inf fails
                    raise IndexError
                out[prop].append(np.array(tokens[col + 1 : col + 1 + int(n)], dtype=np.float64))
                col += 1 + int(n)
        except IndexError:
            raise corrupt(
                path,
                f"line {line}: a {name} row with {len(tokens)} values does not hold the "
                f"properties the header declares ({' '.join(p for p, _, _ in props)})",
            ) from None
        except ValueError as e:
            raise corrupt(path, f"line {line}: bad number in a {name} row ({e})") from None
        extra += col < len(tokens)
    return {p: (np.array(v) if item is None else v) for (p, _, item), v in zip(props, out.values())}, extra


def _ascii_element(rows, line_numbers, pos, name, count, props, path):
    if len(rows) - pos < count:
        raise corrupt(path, f"expected {count} {name} rows, the file ends after {len(rows) - pos}")
    block, lines = rows[pos : pos + count], line_numbers[pos : pos + count]
    if count == 0:
        return {p: (np.zeros(0) if item is None else np.zeros((0, 0))) for p, _, item in props}, pos
    widths = np.fromiter((len(r.split()) for r in block), np.int64, count)
    fast = _ascii_uniform(block, widths, props)
    if fast is not None:
        values, extra = fast
        extra_rows, first = (count, lines[0]) if extra else (0, None)
    else:
        values, extra_rows = _ascii_rows(block, lines, name, props, path)
        first = None
    if extra_rows:
        log.warning(
            "%s: %d %s rows carry more values than the header declares%s; read by the declared "
            "properties (%s), the rest ignored",
            path,
            extra_rows,
            name,
            f" (from line {first})" if first else "",
            " ".join(p for p, _, _ in props),
        )
    return values, pos + count


# ---- the file ----------------------------------------------------------------------------------------------


def _as_declared(values, dtype: str, path) -> np.ndarray:
    """A coordinate column as float64 holding the value of its declared type (ascii text is parsed as float64:
    a 'float' property is rounded to float32, as a binary file of the same data would hold it)."""
    values = np.asarray(values)
    if values.dtype == np.float64 and dtype[0] in "iu":
        with np.errstate(invalid="ignore"):
            info = np.iinfo(dtype)
            if not ((values == np.floor(values)) & (values >= info.min) & (values <= info.max)).all():
                raise corrupt(path, f"a vertex coordinate is not a valid {dtype} value")
    with np.errstate(over="ignore"):  # beyond float32: inf, refused later as a non-finite coordinate
        return values.astype(dtype).astype(np.float64)


def read_ply(path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(vertices float64 (N, 3), triangles int64 (T, 3) or None for a point cloud). A file that declares faces
    or strips but yields no triangle is an error, never a vertex cloud."""
    path = Path(path)
    data = path.read_bytes()
    fmt, elements, pos, header_lines = _header(data, path)
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    if order is None:
        lines = data[pos:].split(b"\n")
        keep = [i for i, ln in enumerate(lines) if ln.strip()]
        rows, line_numbers, pos = [lines[i] for i in keep], [header_lines + 1 + i for i in keep], 0
    found = {}
    try:
        for name, count, props in elements:
            if order is None:
                found[name], pos = _ascii_element(rows, line_numbers, pos, name, count, props, path)
            else:
                found[name], pos = _binary_element(data, pos, name, count, props, order, path)
            if order is not None and "vertex" in found and any(m in found for m in _MESH_ELEMENTS):
                break  # binary: the rest is not needed (ascii reads on, so leftover rows are caught)
    except CorruptFileError:
        raise
    except (ValueError, IndexError, OverflowError) as e:
        raise corrupt(path, f"bad PLY data ({e})") from None
    if order is None and pos < len(rows):  # as plyfile and trimesh do: the header's counts rule, said aloud
        log.warning(
            "%s: %d rows after the last element the header declares (from line %d) are ignored",
            path,
            len(rows) - pos,
            line_numbers[pos],
        )
    vertex = found.get("vertex")
    declared = {p: t for name, _, props in elements if name == "vertex" for p, t, item in props if item is None}
    if vertex is None or not {"x", "y", "z"} <= set(declared):
        raise ValueError(f"{path}: PLY has no vertex element with x y z properties")
    vertices = np.stack([_as_declared(vertex[a], declared[a], path) for a in "xyz"], axis=1)
    for kind in _MESH_ELEMENTS:
        declared = next((count for name, count, _ in elements if name == kind), 0)
        if not declared:
            continue
        key = next((k for k in _INDEX_LISTS if k in found[kind]), None)
        if key is None:
            raise corrupt(path, f"{declared} {kind} rows but no vertex_indices list property")
        tris = (triangulate if kind == "face" else triangulate_strips)(found[kind][key], len(vertices), path)
        if not len(tris):
            raise corrupt(path, f"declares {declared} {kind} rows but none gives a triangle")
        return vertices, tris
    return vertices, None
