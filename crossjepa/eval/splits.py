"""Labelled subsets of a dataset: stratified, seeded carving (validation / test parts of a training split) and
relabelled subsets (few-shot episodes)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def dataset_labels(dataset) -> np.ndarray:
    """Labels of every object, int64 (N,): the reader's label array when it has one, else read item by item."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i]["label"]) for i in range(len(dataset))]
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if (labels < 0).any():
        raise ValueError("data: expected labelled objects, found label -1 (a source without labels)")
    return labels


def is_scanned(dataset) -> bool:
    """Scanned real-world objects (ScanObjectNN): not aligned to an up axis like CAD models."""
    return "scanobjectnn" in str(getattr(getattr(dataset, "dataset", dataset), "kind", ""))


def stratified_split(labels: np.ndarray, fraction: float, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices: `fraction` of every class held out, drawn with `seed`. `name` is the
    setting the fraction came from, for the error message."""
    index = np.arange(len(labels))
    try:
        kept, held = train_test_split(index, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as err:  # too few objects per class for a stratified part
        raise ValueError(f"{name}: cannot carve a stratified {fraction:g} part from {len(labels)} objects "
                         f"({str(err).splitlines()[0]})") from None
    return np.sort(kept), np.sort(held)


class LabelledSubset:
    """`indices` of `dataset` with the given labels (default: the dataset's own); the reader's item protocol."""

    def __init__(self, dataset, indices, labels, classes=None) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.shape != self.indices.shape:
            raise ValueError(f"labels: expected {len(self.indices)} labels, got {self.labels.shape}")
        self.classes = classes
        names = getattr(dataset, "names", None)
        self.names = [str(names[i]) if names is not None else str(i) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i) -> dict:
        return {"points": self.dataset[int(self.indices[i])]["points"], "label": int(self.labels[i])}


def subset(dataset, labels: np.ndarray, indices: np.ndarray) -> LabelledSubset:
    """The objects `indices` of `dataset`, keeping their labels and class names."""
    return LabelledSubset(dataset, indices, labels[indices], getattr(dataset, "classes", None))
