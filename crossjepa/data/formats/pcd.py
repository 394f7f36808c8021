"""PCD (Point Cloud Library) files, v0.5-0.7: DATA ascii and binary; binary is read with one np.frombuffer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import corrupt

_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
          ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def _header(data: bytes, path) -> tuple[dict, int]:
    fields, pos = {}, 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise corrupt(path, "PCD header has no DATA line")
        line = data[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        fields[key.upper()] = values
        if key.upper() == "DATA":
            return fields, pos


def read_pcd(path) -> np.ndarray:
    """x, y, z of every valid point as float32 (N, 3); NaN points (PCD's 'no measurement') are dropped."""
    path = Path(path)
    data = path.read_bytes()
    head, offset = _header(data, path)
    try:
        names = head["FIELDS"]
        sizes = [int(s) for s in head["SIZE"]]
        types = [t.upper() for t in head["TYPE"]]
        counts = [int(c) for c in head.get("COUNT", ["1"] * len(names))]
        num = int(head["POINTS"][0]) if "POINTS" in head else int(head["WIDTH"][0]) * int(head["HEIGHT"][0])
        mode = head["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as e:
        raise corrupt(path, f"bad PCD header ({e!r})") from None
    if not len(names) == len(sizes) == len(types) == len(counts):
        raise corrupt(path, "PCD header FIELDS/SIZE/TYPE/COUNT lengths differ")
    if not {"x", "y", "z"} <= set(names):
        raise ValueError(f"{path}: PCD has no x y z fields (FIELDS {' '.join(names)})")
    if mode == "ascii":
        try:
            values = np.array(data[offset:].split(), dtype=np.float64)
        except ValueError as e:
            raise corrupt(path, f"bad ascii value ({e})") from None
        width = sum(counts)
        if values.size != num * width:
            raise corrupt(path, f"expected {num} x {width} ascii values, found {values.size}")
        values = values.reshape(num, width)
        starts = np.cumsum([0] + counts[:-1])
        points = np.stack([values[:, starts[names.index(a)]] for a in "xyz"], axis=1).astype(np.float32)
    elif mode == "binary":
        try:
            dtype = np.dtype([(f"f{k}", _TYPES[t, s], (c,)) for k, (t, s, c) in enumerate(zip(types, sizes, counts))])
        except KeyError:
            raise corrupt(path, f"unsupported PCD TYPE/SIZE {types}/{sizes}") from None
        if len(data) - offset < num * dtype.itemsize:
            raise corrupt(path, f"truncated: {num} points need {num * dtype.itemsize} bytes, "
                                f"found {len(data) - offset}")
        if names == ["x", "y", "z"] and dtype.itemsize == 12 and types == ["F"] * 3:  # the common case
            points = np.frombuffer(data, dtype=np.float32, count=3 * num, offset=offset).reshape(num, 3)
        else:
            records = np.frombuffer(data, dtype=dtype, count=num, offset=offset)
            points = np.stack([records[f"f{names.index(a)}"][:, 0] for a in "xyz"], axis=1).astype(np.float32)
    else:
        raise ValueError(f"{path}: unsupported PCD DATA {mode!r} (expected ascii or binary)")
    finite = np.isfinite(points).all(axis=1)
    return points if finite.all() else points[finite]
