"""Labelled subsets of a dataset: stratified, seeded carving (validation / test parts of a training split) and
relabelled subsets (few-shot episodes)."""

from __future__ import annotations

import numpy as np

from ..data.carve import dataset_labels, stratified_split  # noqa: F401 (shared with pretrain)


def is_scanned(dataset) -> bool:
    """Scanned real-world objects (ScanObjectNN): not aligned to an up axis like CAD models."""
    return "scanobjectnn" in str(getattr(getattr(dataset, "dataset", dataset), "kind", ""))


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
