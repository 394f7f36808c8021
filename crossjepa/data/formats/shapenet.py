"""ShapeNet55 in Point-BERT's layout: ``shapenet_pc/<synset>-<model>.npy`` (8192 x 3) and ``train.txt`` /
``test.txt`` listing those file names (in ``ShapeNet-55/`` beside ``shapenet_pc/``, or beside it directly).
Classes are the synset ids of both lists, sorted, so labels agree between splits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...validate import check_choice
from ..base import SplitNotFound
from .classfolder import FileDataset


def find(root: Path) -> Optional[tuple[Path, Path]]:
    """(folder of the split lists, shapenet_pc folder), or None."""
    for lists in (root, root / "ShapeNet-55"):
        if (lists / "train.txt").is_file() or (lists / "test.txt").is_file():
            for clouds in (lists / "shapenet_pc", lists.parent / "shapenet_pc"):
                if clouds.is_dir():
                    return lists, clouds
    return None


def _entries(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def open_shapenet(root: Path, split: str, **options) -> FileDataset:
    lists, clouds = find(root)
    check_choice("split", split, ("train", "test"), why="ShapeNet55's splits")
    entries = _entries(lists / f"{split}.txt")
    if not entries:
        raise SplitNotFound(f"{lists / f'{split}.txt'}: missing or empty ShapeNet55 split list")
    classes = sorted({e.split("-", 1)[0] for e in _entries(lists / "train.txt") + _entries(lists / "test.txt")})
    index = {c: k for k, c in enumerate(classes)}
    files = [clouds / (e if e.endswith(".npy") else e + ".npy") for e in entries]
    names = [f.stem for f in files]
    labels = [index[e.split("-", 1)[0]] for e in entries]
    return FileDataset(files, names, labels, classes, split, kind="shapenet55", **options)
