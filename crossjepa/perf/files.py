"""Atomic output files: written under a temporary name in the same directory, then renamed into place, so a
reader never sees half a result."""

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


def write_text(path: str | Path, text: str) -> Path:
    with atomic_target(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, payload) -> Path:
    return write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
