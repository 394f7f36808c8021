"""data/contract.py: what crossjepa reads of a dataset, and the datasets it builds carrying all of it."""

from __future__ import annotations

import numpy as np
import pytest

from crossjepa.data import contract, open_dataset, pack
from crossjepa.data.subset import Subset


class Counting:
    """A reader-like dataset that counts the clouds read."""

    def __init__(self, dataset):
        self.dataset, self.reads = dataset, 0
        self.labels, self.classes, self.names, self.kind = dataset.labels, dataset.classes, dataset.names, "x"

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.reads += 1
        return self.dataset[i]


def test_readers_and_synthetic_shapes_carry_the_whole_contract(tmp_path):
    synthetic = open_dataset("synthetic:13")
    packed = open_dataset(pack("synthetic:13", tmp_path / "packed", num_points=64, progress=False))
    for dataset in (synthetic, packed):
        assert isinstance(dataset, contract.DescribedDataset), type(dataset).__name__
        assert contract.labels(dataset).tolist() == [dataset[i]["label"] for i in range(13)]
    assert contract.fps_ordered(packed) and not contract.fps_ordered(synthetic)


def test_subsets_carry_labels_so_nothing_is_read_to_label_them():
    full = Counting(open_dataset("synthetic:30"))
    part = Subset(full, [3, 5, 29])
    assert contract.dataset_labels(part).tolist() == [3, 5, 5] and full.reads == 0
    assert part.names == ["3", "5", "29"] and part.classes == full.classes and contract.kind(part) == "x"
    assert part[2]["label"] == 5 and full.reads == 1
    episode = Subset(part, [0, 2], labels=[1, 0])  # relabelled: the class names no longer apply
    assert episode.labels.tolist() == [1, 0] and episode.classes is None and episode[0]["label"] == 1
    with pytest.raises(ValueError, match="labels: expected 2 labels"):
        Subset(part, [0, 2], labels=[1])


def test_labels_of_a_dataset_without_them_are_read_and_checked():
    class Bare:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"points": np.zeros((4, 3), np.float32), "label": -1 if i else 3}

    assert contract.labels(Bare()).tolist() == [3, -1] and contract.names(Bare()) == ["0", "1"]
    with pytest.raises(ValueError, match="expected labelled objects"):
        contract.dataset_labels(Bare())
