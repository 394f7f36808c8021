"""crossjepa.eval: feature extraction and the linear-SVM probe (C chosen on training data only)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from crossjepa.eval import cross_validated_probe, extract_features, linear_probe, probe_encoder
from crossjepa.eval import probe as probe_module
from crossjepa.models import build
from crossjepa.ops import ReferenceFallbackWarning

CS = (1e-3, 1e-1, 1.0)


def blobs(rng: np.random.Generator, per_class: int, classes: int = 4, dim: int = 12, spread: float = 0.3):
    centers = rng.normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes), per_class)
    return centers[y] + rng.normal(size=(len(y), dim)) * spread, y


def test_separable_features_are_classified_perfectly():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 12)) * 3
    y_train, y_test = np.repeat(np.arange(4), 30), np.repeat(np.arange(4), 15)
    x_train = centers[y_train] + rng.normal(size=(len(y_train), 12)) * 0.3
    x_test = centers[y_test] + rng.normal(size=(len(y_test), 12)) * 0.3
    result = linear_probe(x_train, y_train, x_test, y_test, seeds=(0, 1, 2), folds=3, Cs=CS)
    acc = result["accuracy"]
    assert acc["mean"] >= 0.98
    assert len(acc["per_seed"]) == 3 and acc["std"] == pytest.approx(np.std(acc["per_seed"]))
    assert len(result["C"]) == 3 and all(c in CS for c in result["C"])
    assert all(0.9 <= s <= 1.0 for s in result["cv_accuracy"])


def test_random_labels_are_fitted_like_liblinear():
    # Labels the features cannot predict: a non-separable problem with many rows inside the margin. Both solvers
    # of the one objective choose the same C and score the test rows alike.
    rng = np.random.default_rng(1)
    x_train, x_test = rng.normal(size=(200, 16)), rng.normal(size=(400, 16))
    y_train, y_test = rng.integers(0, 4, 200), rng.integers(0, 4, 400)
    fast = linear_probe(x_train, y_train, x_test, y_test, seeds=(0, 1), folds=3, Cs=CS)
    reference = linear_probe(x_train, y_train, x_test, y_test, seeds=(0, 1), folds=3, Cs=CS, solver="sklearn")
    assert fast["C"] == reference["C"] and fast["converged"] and reference["converged"]
    np.testing.assert_allclose(fast["cv_accuracy"], reference["cv_accuracy"], atol=1 / 200)
    np.testing.assert_allclose(fast["accuracy"]["per_seed"], reference["accuracy"]["per_seed"], atol=2 / 400)


def test_C_is_chosen_without_test_data(monkeypatch):
    rng = np.random.default_rng(2)
    x_train, y_train = blobs(rng, 20, spread=2.0)
    x_test, y_test = blobs(rng, 10, spread=2.0)
    seen = []
    real = probe_module.select_C

    def spy(x, y, *args):
        seen.append(np.array(x, copy=True))
        return real(x, y, *args)

    monkeypatch.setattr(probe_module, "select_C", spy)
    first = linear_probe(x_train, y_train, x_test, y_test, seeds=(0, 1), folds=4, Cs=CS)
    assert len(seen) == 2
    train_rows = {row.tobytes() for row in x_train.astype(np.float64)}
    for x in seen:
        assert {row.tobytes() for row in x} <= train_rows
    # Test labels and features cannot move C or the CV score.
    shuffled = linear_probe(
        x_train, y_train, rng.permutation(x_test), rng.permutation(y_test), seeds=(0, 1), folds=4, Cs=CS
    )
    assert shuffled["C"] == first["C"] and shuffled["cv_accuracy"] == first["cv_accuracy"]


def test_nested_cv_keeps_each_held_out_fold_out_of_its_C_choice(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = blobs(rng, 15, classes=3)
    seen = []
    real = probe_module.select_C

    def spy(xs, ys, *args):
        seen.append({row.tobytes() for row in xs})
        return real(xs, ys, *args)

    monkeypatch.setattr(probe_module, "select_C", spy)
    folds = 3
    result = cross_validated_probe(x, y, seeds=(0, 1), folds=folds, Cs=CS)
    assert result["accuracy"]["mean"] >= 0.95 and len(result["accuracy"]["per_seed"]) == 2
    assert len(result["C_per_fold"]) == 2 and all(len(cs) == folds for cs in result["C_per_fold"])
    rows = [r.tobytes() for r in x]
    for s in range(2):
        held_out = [set(rows) - seen[s * folds + f] for f in range(folds)]
        # The held-out folds of one seed partition the data: every row was held out of exactly one C choice.
        assert sum(len(h) for h in held_out) == len(rows) and set().union(*held_out) == set(rows)


def test_bad_probe_inputs():
    rng = np.random.default_rng(4)
    x, y = blobs(rng, 4, classes=2)
    with pytest.raises(ValueError, match="folds"):
        linear_probe(x, y, x, y, folds=5, Cs=CS)
    with pytest.raises(ValueError, match="test_x"):
        linear_probe(x, y, x[:, :3], y, folds=2, Cs=CS)
    with pytest.raises(ValueError, match="train_y"):
        linear_probe(x, y[:-1], x, y, folds=2, Cs=CS)
    with pytest.raises(ValueError, match="seeds"):
        cross_validated_probe(x, y, seeds=(), folds=2, Cs=CS)


def test_one_class_is_refused_with_one_line():
    """One class leaves nothing to separate: sklearn raises; the fast solver used to fit one all-positive column
    that `predict` read as binary, and report 0 %."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 6))
    one, two = np.full(12, 3), np.arange(12) % 2
    message = r"expected labels of at least 2 classes for a probe, got only label 3$"
    with pytest.raises(ValueError, match="^train_y: " + message):
        linear_probe(x, one, x, one, folds=2, Cs=CS)
    with pytest.raises(ValueError, match="^y: " + message):
        cross_validated_probe(x, one, folds=2, Cs=CS)
    with pytest.raises(ValueError, match="^y: " + message):
        probe_module.select_C(x, one, CS, folds=2)
    for solver in probe_module.SOLVERS:  # a test split of one class is fine: it is only scored
        assert linear_probe(x, two, x[:4], np.zeros(4, int), folds=2, Cs=CS, solver=solver, seeds=(0,))["C"]


def test_each_folds_basis_comes_from_its_training_rows_only():
    """The rows held out of a CV fold (its validation rows) shape nothing of that fold's fit: not the
    standardisation, not the principal axes, not the weights."""
    rng = np.random.default_rng(6)
    x, y = blobs(rng, 10, classes=3, dim=5, spread=1.0)
    train = np.arange(0, len(x), 2)
    changed = x.copy()
    changed[1::2] = rng.normal(size=changed[1::2].shape) * 10  # every row outside the fold
    fits = []
    for features in (x, changed):
        folds, path = probe_module._Problem(features, y, torch.device("cpu")).path([train], CS)
        fits.append((folds, path[-1].weights))
    (a, wa), (b, wb) = fits
    for name in ("rows", "mean", "scale", "rotation"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(wa, wb)


class Clouds:
    """A tiny labelled dataset of clouds with differing point counts (like real data)."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            label = i % 2
            pts = torch.randn(int(torch.randint(300, 700, (1,), generator=gen)), 3, generator=gen)
            pts[:, 0] *= 0.2 if label else 1.0  # class 1: flat along x
            self.items.append({"points": pts, "label": label})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceFallbackWarning)
        yield


def test_extract_features_is_seeded_and_restores_mode(quiet):
    torch.manual_seed(0)
    model = build("tiny", **{"tokenizer.fps_start": "random"})
    model.train()
    data = Clouds(7, seed=0)
    x, y = extract_features(model, data, batch_size=3, seed=0, progress=False)
    again, _ = extract_features(model.encoder, data, batch_size=4, seed=0, progress=False)
    other, _ = extract_features(model, data, batch_size=3, seed=1, progress=False)
    assert x.shape == (7, 2 * model.config.encoder.width) and x.dtype == np.float32
    assert y.tolist() == [i % 2 for i in range(7)]
    np.testing.assert_allclose(x, again, atol=1e-5)
    assert not np.allclose(x, other)
    assert model.training and model.encoder.training


def test_probe_encoder_end_to_end(quiet):
    torch.manual_seed(0)
    model = build("tiny")
    result = probe_encoder(
        model, Clouds(24, seed=1), Clouds(12, seed=2), seeds=(0, 1), folds=3, Cs=CS, batch_size=12, progress=False
    )
    per_seed = result["accuracy"]["per_seed"]
    assert len(per_seed) == 2 and result["accuracy"]["mean"] == pytest.approx(np.mean(per_seed))
    assert result["accuracy"]["std"] == pytest.approx(np.std(per_seed))
    nested = probe_encoder(model, Clouds(24, seed=1), seeds=(0,), folds=3, Cs=CS, batch_size=12, progress=False)
    assert len(nested["C_per_fold"]) == 1
