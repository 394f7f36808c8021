"""The fast probe solver (crossjepa.eval.linear_svm) against scikit-learn's LinearSVC(dual=False), the objective it
solves: on generated features shaped like real embeddings (1,280-d, correlated, 10 classes, 4,000 rows) and, through
the whole protocol, on features of real ModelNet10 clouds (skipped when the data set is absent)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from crossjepa.eval import linear_svm
from crossjepa.eval import probe as probe_module
from crossjepa.eval.probe import linear_probe
from crossjepa.perf.suite_probe import probe_features

C = 1e-3  # liblinear needs ~30 s per fit on these features here; larger C costs it minutes


def objective(w: np.ndarray, b: np.ndarray, x: np.ndarray, targets: np.ndarray, c: float) -> np.ndarray:
    """LinearSVC's primal per one-vs-rest column: 1/2 (|w|^2 + b^2) + C sum max(0, 1 - y (x w + b))^2."""
    margins = targets * (x @ w + b)
    return 0.5 * ((w * w).sum(0) + b * b) + c * (np.maximum(0, 1 - margins) ** 2).sum(0)


@pytest.fixture(scope="module")
def embeddings():
    """4,000 training and 900 test rows, standardised with the training statistics (as the probe does)."""
    train_x, train_y = probe_features(4000, seed=0)
    test_x, test_y = probe_features(900, seed=1)
    scaler = StandardScaler().fit(train_x)
    return scaler.transform(train_x), train_y, scaler.transform(test_x), test_y


@pytest.fixture(scope="module")
def liblinear(embeddings):
    train_x, train_y, _, _ = embeddings
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the reference itself must have converged
        return LinearSVC(C=C, dual=False, max_iter=10000).fit(train_x, train_y)


def fast_fit(train_x, train_y, c: float):
    x = torch.as_tensor(train_x, dtype=torch.float32)
    folds = linear_svm.standardise(x, [torch.arange(len(x))])
    targets = linear_svm.one_vs_rest_targets(torch.as_tensor(train_y), 10)[None].float()
    warm = None
    for step in (1e-4, c):  # the probe's warm-started path
        fitted = linear_svm.fit(folds, targets, step, warm)
        warm = fitted.weights
    return folds, fitted


def test_fast_solver_reaches_liblinears_optimum_on_embedding_like_features(embeddings, liblinear):
    train_x, train_y, test_x, test_y = embeddings
    folds, fitted = fast_fit(train_x, train_y, C)
    assert bool(fitted.converged.all())
    targets = np.where(train_y[:, None] == np.arange(10), 1.0, -1.0)
    # Our weights live in the fold's rotated basis; scores are basis-free, so compare objectives through them.
    rows = folds.transform(0, torch.as_tensor(train_x, dtype=torch.float32)).double()
    w = fitted.weights[0].double()
    ours = (0.5 * (w * w).sum(0) + C * torch.relu(1 - torch.as_tensor(targets) * (rows @ w)).pow(2).sum(0)).numpy()
    theirs = objective(liblinear.coef_.T, liblinear.intercept_, train_x, targets, C)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)
    assert (ours <= theirs * (1 + 1e-4)).all()  # no worse than liblinear's optimum
    scores = folds.transform(0, torch.as_tensor(test_x, dtype=torch.float32)) @ fitted.weights[0]
    predicted = linear_svm.predict(scores).numpy()
    reference = liblinear.predict(test_x)
    assert (predicted == reference).mean() >= 0.98
    assert abs((predicted == test_y).mean() - (reference == test_y).mean()) <= 0.01


def test_binary_problems_fit_one_column_like_liblinear():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)) + np.repeat([[0.0], [1.0]], 60, axis=0)
    y = np.repeat([0, 1], 60)
    targets = linear_svm.one_vs_rest_targets(torch.as_tensor(y), 2)
    assert targets.shape == (120, 1) and targets[:, 0].tolist() == [-1.0] * 60 + [1.0] * 60
    rows = torch.as_tensor(x, dtype=torch.float32)
    folds = linear_svm.standardise(rows, [torch.arange(120)])
    fitted = linear_svm.fit(folds, targets[None], 0.1)
    scaled = StandardScaler().fit_transform(x)
    reference = LinearSVC(C=0.1, dual=False).fit(scaled, y)
    ours = folds.transform(0, torch.as_tensor(x, dtype=torch.float32)) @ fitted.weights[0]
    np.testing.assert_allclose(ours[:, 0].numpy(), reference.decision_function(scaled), atol=1e-3)
    assert linear_svm.predict(ours).tolist() == reference.predict(scaled).tolist()


def test_an_unconverged_fit_is_reported(monkeypatch):
    train_x, train_y = probe_features(300, dim=64, classes=4, seed=0)
    test_x, test_y = probe_features(100, dim=64, classes=4, seed=1)
    real = linear_svm.fit
    monkeypatch.setattr(linear_svm, "fit", lambda *a, **k: real(*a, **{**k, "max_iter": 1}))
    with pytest.warns(ConvergenceWarning, match="before converging"):
        result = linear_probe(train_x, train_y, test_x, test_y, seeds=(0,), folds=3, Cs=(1e-2, 1.0))
    assert result["converged"] is False and result["unconverged_fits"] > 0
    monkeypatch.setattr(linear_svm, "fit", real)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = linear_probe(train_x, train_y, test_x, test_y, seeds=(0,), folds=3, Cs=(1e-2, 1.0))
    assert result["converged"] is True and result["unconverged_fits"] == 0


def test_solver_is_checked():
    x, y = probe_features(40, dim=4, classes=2)
    with pytest.raises(ValueError, match="solver"):
        linear_probe(x, y, x, y, folds=2, solver="liblinear")


# ------------------------------------------------------------------------ real data, the whole protocol

_NEXT_TO_REPO = Path(__file__).resolve().parents[2] / "shared" / "data" / "modelnet10"
MODELNET10 = Path(os.environ.get("CROSSJEPA_MODELNET10", _NEXT_TO_REPO))


@pytest.fixture(scope="module")
def modelnet10_features():
    """Features of 30 real clouds per class (20 train, 10 test) from a random-init tiny encoder."""
    if not MODELNET10.is_dir():
        pytest.skip(f"ModelNet10 not found at {MODELNET10}")
    from crossjepa.data import open_dataset
    from crossjepa.eval import extract_features
    from crossjepa.models import build
    from crossjepa.ops import ReferenceFallbackWarning

    data = open_dataset(MODELNET10)
    labels = np.asarray(data.labels)
    picked = np.concatenate([np.flatnonzero(labels == k)[:30] for k in range(len(data.classes))])

    class Subset:
        def __init__(self, rows):
            self.rows = rows

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            return data[int(self.rows[i])]

    train_rows = np.concatenate([picked[k * 30 : k * 30 + 20] for k in range(len(data.classes))])
    test_rows = np.concatenate([picked[k * 30 + 20 : k * 30 + 30] for k in range(len(data.classes))])
    torch.manual_seed(0)
    model = build("tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceFallbackWarning)
        train = extract_features(model, Subset(train_rows), num_points=512, progress=False)
        test = extract_features(model, Subset(test_rows), num_points=512, progress=False)
    return (*train, *test)


def test_fast_and_sklearn_probes_agree_on_real_features(modelnet10_features, monkeypatch):
    chosen = {}
    real = probe_module.select_C

    def spy(x, y, *args):
        result = real(x, y, *args)
        chosen.setdefault(args[-2], []).append(result)  # keyed by solver
        return result

    monkeypatch.setattr(probe_module, "select_C", spy)
    fast = linear_probe(*modelnet10_features, seeds=(0, 1), folds=3, solver="fast")
    reference = linear_probe(*modelnet10_features, seeds=(0, 1), folds=3, solver="sklearn")
    assert fast["solver"] == "fast" and reference["solver"] == "sklearn"
    assert fast["converged"] and reference["converged"]
    assert abs(fast["accuracy"]["mean"] - reference["accuracy"]["mean"]) <= 0.01
    for ours, theirs in zip(fast["cv_accuracy"], reference["cv_accuracy"]):
        assert abs(ours - theirs) <= 0.01  # the same folds and grid: the CV curves' maxima agree
    assert len(chosen["fast"]) == len(chosen["sklearn"]) == 2
