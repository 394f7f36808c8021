"""Synthetic shapes: deterministic, labelled, normalised, and classes that differ in geometry."""

import numpy as np
import pytest
import torch

from crossjepa.data.synthetic import SyntheticShapes


def test_objects_are_deterministic_per_seed_split_and_index():
    a, b = SyntheticShapes(30, num_points=256, seed=4), SyntheticShapes(30, num_points=256, seed=4)
    for i in (17, 3, 29, -1):  # any order, negative indices too
        assert torch.equal(a[i]["points"], b[i]["points"]) and a[i]["label"] == b[i]["label"]
    assert torch.equal(a[-1]["points"], a[29]["points"])
    assert a.fingerprint() == b.fingerprint()
    other = SyntheticShapes(30, num_points=256, seed=5)
    assert not torch.equal(a[0]["points"], other[0]["points"]) and a.fingerprint() != other.fingerprint()
    assert a.fingerprint() != SyntheticShapes(31, num_points=256, seed=4).fingerprint()


def test_at_least_ten_balanced_classes():
    ds = SyntheticShapes(48, num_points=64)
    assert len(ds) == 48 and len(ds.classes) >= 10 and len(set(ds.classes)) == len(ds.classes)
    labels = [ds[i]["label"] for i in range(len(ds))]
    assert all(isinstance(label, int) for label in labels)
    assert np.bincount(labels, minlength=len(ds.classes)).min() >= 48 // len(ds.classes)


def test_train_and_test_splits_are_disjoint():
    train, test = SyntheticShapes(24, num_points=128, split="train"), SyntheticShapes(24, num_points=128, split="test")
    assert train.split == "train" and test.split == "test" and train.fingerprint() != test.fingerprint()
    for i in range(24):
        assert train[i]["label"] == test[i]["label"]  # same class, different object
        assert (train[i]["points"] - test[i]["points"]).abs().max() > 0.05


def test_shapes_are_normalised_to_the_unit_sphere():
    ds = SyntheticShapes(24, num_points=500, seed=9)
    for i in range(len(ds)):
        p = ds[i]["points"]
        assert p.shape == (500, 3) and p.dtype == torch.float32 and torch.isfinite(p).all()
        assert p.mean(0).abs().max() < 1e-5
        assert abs(p.norm(dim=1).max().item() - 1) < 1e-5


def _shape_features(ds):
    """Rotation-invariant descriptors: histogram of distances to the centroid + normalised PCA spectrum."""
    feats, labels = [], []
    for i in range(len(ds)):
        item = ds[i]
        p = item["points"].numpy().astype(np.float64)
        spectrum = np.sort(np.linalg.eigvalsh(np.cov(p.T)))[::-1]
        radial = np.histogram(np.linalg.norm(p, axis=1), bins=10, range=(0, 1))[0] / len(p)
        feats.append(np.concatenate([radial, spectrum / spectrum.sum()]))
        labels.append(item["label"])
    return np.array(feats), np.array(labels)


def test_classes_differ_in_geometry():
    # A nearest-class-mean classifier on simple shape statistics, fitted on train and scored on test, is far
    # above chance: the classes are different geometries, not relabelled copies of one another.
    train = SyntheticShapes(240, num_points=512, split="train")
    test = SyntheticShapes(120, num_points=512, split="test")
    x_train, y_train = _shape_features(train)
    x_test, y_test = _shape_features(test)
    means = np.stack([x_train[y_train == c].mean(0) for c in range(len(train.classes))])
    pred = ((x_test[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y_test).mean() > 4 / len(train.classes)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes(10, split="val")
    with pytest.raises(ValueError, match="num_objects"):
        SyntheticShapes(0)
    with pytest.raises(ValueError, match="num_points"):
        SyntheticShapes(10, num_points=-5)
    with pytest.raises(IndexError):
        SyntheticShapes(10)[10]
