"""Atomic outputs: a file or a directory is written under a temporary name in the same directory, then renamed
into place, so a reader never sees half a result and a kill leaves the old version or the new one (a directory
replacing another may, after a kill between its two renames, leave the old one aside, see `replace_dir`).
Every file and output directory crossjepa writes goes through here."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
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


def replace_dir(src: str | Path, dst: str | Path) -> Path:
    """Move the finished directory `src` to `dst`, replacing what `dst` held. A directory cannot be renamed
    over a non-empty one, so an existing `dst` is first renamed aside to `.<name>.old-<pid>` and deleted once
    `src` is in place: a kill between the two renames leaves `dst` missing and its old version aside, never a
    mixture of the two; the next replacement of `dst` deletes such leftovers."""
    src, dst = Path(src), Path(dst)
    if dst.exists() or dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(dst, old)
    os.replace(src, dst)
    for old in dst.parent.glob(f".{glob.escape(dst.name)}.old-*"):
        _remove(old)
    return dst


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yields an empty temporary directory beside `path`; when the block ends without error it replaces
    `path` (see `replace_dir`), otherwise it is deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)  # left by a killed process that had the same pid
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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
