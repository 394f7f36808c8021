"""PCD (Point Cloud Library) files, v0.5-0.7: DATA ascii, binary and binary_compressed (LZF).

Layouts: ascii is one point per line; binary is point-major records (one np.frombuffer); binary_compressed is
two little-endian uint32 (compressed size, uncompressed size), then an LZF stream that decodes to the fields
one after another (all x, then all y, ...: field-major). Every size the header declares is checked against the
file before anything is allocated.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..base import corrupt
from .lzf import lzf_decompress

_TYPES = {
    ("F", 4): "f4",
    ("F", 8): "f8",
    ("I", 1): "i1",
    ("I", 2): "i2",
    ("I", 4): "i4",
    ("I", 8): "i8",
    ("U", 1): "u1",
    ("U", 2): "u2",
    ("U", 4): "u4",
    ("U", 8): "u8",
}
_MAX_HEADER_LINES = 64  # real headers have ~11 lines; a file without DATA is not read to its end


def _header(data: bytes, path) -> tuple[dict, int]:
    fields, pos = {}, 0
    for _ in range(_MAX_HEADER_LINES):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        fields[key.upper()] = values
        if key.upper() == "DATA":
            return fields, pos
    raise corrupt(path, "not a PCD file (no DATA line in the header)")


def _layout(head: dict, path):
    """(field names, numpy dtypes, counts, number of points, DATA mode), all checked."""
    try:
        names = head["FIELDS"]
        sizes = [int(s) for s in head["SIZE"]]
        types = [t.upper() for t in head["TYPE"]]
        counts = [int(c) for c in head.get("COUNT", ["1"] * len(names))]
        num = int(head["POINTS"][0]) if "POINTS" in head else None
        grid = int(head["WIDTH"][0]) * int(head["HEIGHT"][0]) if "WIDTH" in head and "HEIGHT" in head else None
        if num is None and grid is None:
            raise KeyError("POINTS")
        if num is not None and grid is not None and num != grid:
            raise ValueError(f"POINTS {num} differs from WIDTH x HEIGHT {grid}")
        num = grid if num is None else num
        mode = head["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as e:
        raise corrupt(path, f"bad PCD header ({type(e).__name__}: {e})") from None
    if not len(names) == len(sizes) == len(types) == len(counts) > 0:
        raise corrupt(path, "PCD header FIELDS/SIZE/TYPE/COUNT lengths differ")
    if num < 0 or min(counts) < 1 or max(counts) > 2**20:  # real fields hold at most a few hundred values
        raise corrupt(path, f"PCD header declares {num} points with COUNT {counts}")
    try:
        dtypes = [_TYPES[t, s] for t, s in zip(types, sizes)]
    except KeyError:
        raise corrupt(path, f"unsupported PCD TYPE/SIZE {types}/{sizes}") from None
    for axis in "xyz":
        if names.count(axis) != 1:
            raise ValueError(f"{path}: PCD needs exactly one x, y and z field (FIELDS {' '.join(names)})")
        if counts[names.index(axis)] != 1:
            raise corrupt(path, f"PCD field {axis} has COUNT {counts[names.index(axis)]} (expected 1)")
    return names, dtypes, counts, num, mode


def _ascii(body: bytes, names, counts, num, path) -> np.ndarray:
    width = sum(counts)
    rows = [ln for ln in body.split(b"\n") if ln.strip()]
    if len(rows) != num:
        raise corrupt(path, f"expected {num} ascii point lines, found {len(rows)}")
    widths = np.fromiter((len(r.split()) for r in rows), np.int64, len(rows))
    bad = np.flatnonzero(widths != width)
    if bad.size:
        raise corrupt(path, f"ascii point {bad[0]} has {widths[bad[0]]} values, the header declares {width}")
    try:
        values = np.array(b" ".join(rows).split(), dtype=np.float64).reshape(num, width)
    except ValueError as e:
        raise corrupt(path, f"bad ascii value ({e})") from None
    starts = np.cumsum([0] + counts[:-1])
    return np.stack([values[:, starts[names.index(a)]] for a in "xyz"], axis=1)


def _binary(data: bytes, offset: int, names, dtypes, counts, num, path) -> np.ndarray:
    dtype = np.dtype([(f"f{k}", "<" + t, (c,)) for k, (t, c) in enumerate(zip(dtypes, counts))])
    need = num * dtype.itemsize
    if len(data) - offset < need:
        raise corrupt(path, f"truncated: {num} points need {need} bytes, found {len(data) - offset}")
    if data[offset + need :].strip(b"\0 \t\r\n"):  # PCL pads with zeros; other bytes mean the counts are wrong
        raise corrupt(path, f"{len(data) - offset - need} bytes after the {num} points the header declares")
    records = np.frombuffer(data, dtype=dtype, count=num, offset=offset)
    return np.stack([records[f"f{names.index(a)}"][:, 0] for a in "xyz"], axis=1)


def _compressed(data: bytes, offset: int, names, dtypes, counts, num, path) -> np.ndarray:
    if len(data) - offset < 8:
        raise corrupt(path, "binary_compressed data has no size words")
    packed, unpacked = struct.unpack_from("<II", data, offset)
    sizes = [np.dtype(t).itemsize * c for t, c in zip(dtypes, counts)]
    if unpacked != num * sum(sizes):
        raise corrupt(path, f"binary_compressed declares {unpacked} bytes, {num} points need {num * sum(sizes)}")
    if packed > len(data) - offset - 8:
        raise corrupt(
            path, f"truncated: binary_compressed declares {packed} compressed bytes, found {len(data) - offset - 8}"
        )
    try:
        raw = lzf_decompress(data[offset + 8 : offset + 8 + packed], unpacked)
    except ValueError as e:
        raise corrupt(path, f"bad LZF data ({e})") from None
    starts = np.cumsum([0] + sizes[:-1]) * num  # field-major: all of field 0, then all of field 1, ...
    return np.stack(
        [np.frombuffer(raw, "<" + dtypes[names.index(a)], num, int(starts[names.index(a)])) for a in "xyz"], axis=1
    )


def read_pcd(path) -> np.ndarray:
    """x, y, z of every valid point as float32 (N, 3); points with a NaN or infinite coordinate (PCD's 'no
    measurement') are dropped, for every DATA kind alike."""
    path = Path(path)
    data = path.read_bytes()
    head, offset = _header(data, path)
    names, dtypes, counts, num, mode = _layout(head, path)
    if mode == "ascii":
        points = _ascii(data[offset:], names, counts, num, path)
    elif mode == "binary":
        points = _binary(data, offset, names, dtypes, counts, num, path)
    elif mode == "binary_compressed":
        points = _compressed(data, offset, names, dtypes, counts, num, path)
    else:
        raise ValueError(f"{path}: unsupported PCD DATA {mode!r} (expected ascii, binary or binary_compressed)")
    with np.errstate(over="ignore", invalid="ignore"):  # float64 values beyond float32 become inf: dropped
        points = points.astype(np.float32)
    finite = np.isfinite(points).all(axis=1)
    return points if finite.all() else points[finite]
