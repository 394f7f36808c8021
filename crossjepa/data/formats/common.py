"""Helpers shared by the single-file formats: the split a file name implies, and pickle loading."""

from __future__ import annotations

import mmap
import os
import pickle
import struct
from pathlib import Path

from ..base import SplitNotFound, corrupt

# (train marker, test marker, where it sits): ScanObjectNN's training_*/test_*, then *_train*/*_test*
_MARKERS = (("training_", "test_", "prefix"), ("_train", "_test", "inside"))


def split_file(path: Path, split: str) -> Path:
    """The file holding ``split``: ``path`` itself, or its sibling with the split marker swapped
    (training_x.h5 <-> test_x.h5, ply_data_train0.h5 <-> ply_data_test0.h5). Names with no marker are
    taken as they are."""
    name = path.name
    for train, test, where in _MARKERS:
        for have, other, have_split in ((train, test, "train"), (test, train, "test")):
            found = name.startswith(have) if where == "prefix" else have in name
            if not found:
                continue
            if split == have_split:
                return path
            sibling = path.with_name(name.replace(have, other, 1))
            if split in ("train", "test") and sibling.is_file():
                return sibling
            raise SplitNotFound(f"{path} holds the {have_split} split; for split {split!r} looked for {sibling}")
    return path


def load_pickle(path: Path):
    """Pickle files execute code when loaded: only open data files you trust (as their original loaders do).
    Read from a memory map, not a file object: a damaged length field then fails the unpickler's bounds check,
    where reading from a file would first try to allocate the declared length."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise EOFError("empty file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return pickle.loads(mapped)
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        IndexError,
        ValueError,
        KeyError,
        TypeError,
        OverflowError,
        struct.error,
        MemoryError,
    ) as e:  # damaged opcodes can ask for any size
        raise corrupt(path, f"unreadable pickle ({type(e).__name__}: {e})") from None
