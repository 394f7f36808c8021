"""ModelNet40 few-shot folds (Point-BERT): ``<way>way_<shot>shot/<fold>.pkl`` (also ``<way>way<shot>shot``),
a pickle of {"train": [(points (N, >=3), label, _), ...], "test": [...]}. Labels are the episode's own
(0 .. way-1); the files carry no class names, so ``classes`` is None."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..base import ArrayDataset, corrupt
from .common import load_pickle

FOLD_DIR = re.compile(r"^\d+way_?\d+shot$")


def is_fold_dir(root: Path) -> bool:
    return bool(FOLD_DIR.match(root.name)) and any(root.glob("*.pkl"))


def open_fold(path: Path, split: str, **options) -> ArrayDataset:
    content = load_pickle(path)
    if not isinstance(content, dict) or split not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise corrupt(path, f"expected a dict with key {split!r}, found {keys}")
    try:
        points = [np.asarray(item[0]) for item in content[split]]
        labels = [int(np.asarray(item[1]).reshape(-1)[0]) for item in content[split]]
    except (TypeError, IndexError, ValueError) as e:
        raise corrupt(path, f"expected {split!r} to be a list of (points, label, _) ({e})") from None
    source = f"{path.parent.name}/{path.name}"
    return ArrayDataset(
        points,
        labels,
        None,
        split,
        kind="modelnet-fewshot",
        source=source,
        names=[f"{source}:{split}:{i}" for i in range(len(points))],
        **options,
    )
