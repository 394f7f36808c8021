"""A subset of a dataset's objects: held out of pretraining, carved for validation, or a few-shot episode."""

from __future__ import annotations

import numpy as np

from . import contract


class Subset:
    """The objects `ids` of `dataset`, renumbered 0..len-1 (`ids[i]` is the original index), carrying their
    labels, names, classes, kind and point order (data/contract.py). `labels` relabels them (a few-shot
    episode's 0..way-1: the dataset's class names then no longer apply, so `classes` is None). A packed
    dataset's arrays stay visible, row-mapped (`array_rows`), so loaders still gather whole batches."""

    def __init__(self, dataset: contract.PointDataset, ids, labels=None) -> None:
        self.dataset, self.ids = dataset, np.asarray(ids, dtype=np.int64).reshape(-1)
        if labels is None:
            self.labels, self.classes = contract.labels(dataset)[self.ids], contract.classes(dataset)
        else:
            self.labels, self.classes = np.asarray(labels, dtype=np.int64), None
            if self.labels.shape != self.ids.shape:
                raise ValueError(f"labels: expected {len(self.ids)} labels, got shape {self.labels.shape}")
        names = contract.names(dataset)
        self.names = [names[i] for i in self.ids]
        self.fps_ordered, self.kind = contract.fps_ordered(dataset), contract.kind(dataset)
        points = contract.points_array(dataset)
        if points is not None:
            rows = contract.array_rows(dataset)
            self.points_array = points
            self.array_rows = self.ids if rows is None else rows[self.ids]
            self.labels_array = self.labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i) -> dict:
        return {"points": self.dataset[int(self.ids[i])]["points"], "label": int(self.labels[i])}
