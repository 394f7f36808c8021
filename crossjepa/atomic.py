"""Atomic output files: written under a temporary name in the same directory, then renamed into place, so a
reader never sees half a result and a kill leaves either the old file or the new one. Every file crossjepa
writes goes through here."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_target(path: str | Path):
    """Yields a temporary path beside `path` (same suffix, for writers that look at it); renamed to `path`
    when the block ends without error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """fsync=True also forces the bytes to disk before the rename (for records a resume relies on)."""
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, payload) -> Path:
    return write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
