"""Linear probe: a linear SVM on standardised encoder features.

C is always chosen by stratified k-fold cross-validation on training data only (`select_C`); test data is
used exactly once per seed, to score the refitted classifier. Standardisation statistics (and the principal axes
the fast solver works in) come from each fit's own training rows, so no statistic of held-out data leaks into
the fit either. A probe needs labels of at least two classes: fewer is refused (ValueError).

Two solvers of one objective, scikit-learn's `LinearSVC(dual=False)` primal (squared hinge, L2, one-vs-rest,
regularised intercept): "fast" (the default, `linear_svm`: every fold, class and C of a CV in one batched
torch problem, on the features' device) and "sklearn" (liblinear, one fit per fold and C), kept so any number
can be checked. A fit that stops before converging is reported: a ConvergenceWarning and the result's
"converged"/"unconverged_fits" fields.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ..validate import check_choice, check_int
from . import linear_svm
from .features import extract_features

DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 1, 6))
SOLVERS = ("fast", "sklearn")


def _check(x, y, xname: str, yname: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{xname}: expected a non-empty (N, F) feature array, got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"{yname}: expected shape ({len(x)},) to match {xname}, got {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{xname}: expected finite features, found NaN or inf")
    return x, y


def check_classes(y: np.ndarray, yname: str) -> None:
    """ValueError unless `y` holds labels of at least two classes (one class leaves nothing to separate)."""
    classes = np.unique(y)
    if len(classes) < 2:
        found = f"only label {classes[0].item()!r}" if len(classes) else "no labels"
        raise ValueError(f"{yname}: expected labels of at least 2 classes for a probe, got {found}")


def _check_folds(folds, y: np.ndarray) -> None:
    smallest = min(Counter(y.tolist()).values())
    check_int("folds", folds, 2, smallest, why=f"the smallest class in the data being split has {smallest} samples")


def _check_solver(solver) -> str:
    return check_choice("solver", solver, SOLVERS)


def _device(*arrays) -> torch.device:
    """Where the fast solver runs: the device of the first torch tensor given, else the CPU."""
    return next((a.device for a in arrays if isinstance(a, torch.Tensor)), torch.device("cpu"))


class CVChoice(NamedTuple):
    C: float
    cv_accuracy: float
    unconverged: int  # fits (fold x C x one-vs-rest column) that stopped before converging


class _Problem:
    """Training rows (float32 on `device`) and their labels as class indices, for the fast solver."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device):
        self.classes, codes = np.unique(y, return_inverse=True)
        self.x = torch.as_tensor(x, dtype=torch.float32, device=device)
        self.y = torch.as_tensor(codes, device=device)

    def codes(self, y: np.ndarray) -> torch.Tensor:
        """Labels of other rows as indices into `classes` (-1 for a class the training rows lack)."""
        pos = np.clip(np.searchsorted(self.classes, y), 0, len(self.classes) - 1)
        return torch.as_tensor(np.where(self.classes[pos] == y, pos, -1), device=self.x.device)

    def path(self, train_rows: list[np.ndarray], Cs):
        """Fit every C in increasing order (warm starts) on each fold's training rows -> (folds, [Fit per C])."""
        index = [torch.as_tensor(r, device=self.x.device) for r in train_rows]
        folds = linear_svm.standardise(self.x, index)
        targets = torch.stack(
            [
                torch.nn.functional.pad(
                    linear_svm.one_vs_rest_targets(self.y[r], len(self.classes)),
                    (0, 0, 0, folds.rows.shape[1] - len(r)),
                )
                for r in index
            ]
        ).to(self.x.dtype)
        fits, warm = [], None
        for c in sorted(Cs):
            fits.append(linear_svm.fit(folds, targets, c, warm))
            warm = fits[-1].weights
        return folds, fits

    def accuracy(self, folds, fold: int, weights: torch.Tensor, x: torch.Tensor, codes: torch.Tensor) -> float:
        predicted = linear_svm.predict(folds.transform(fold, x) @ weights[fold])
        return float((predicted == codes).double().mean())


def _warn_unconverged(count: int, where: str) -> None:
    if count:
        warnings.warn(
            f"linear probe: {count} one-vs-rest fit(s) {where} stopped at max_iter before converging",
            ConvergenceWarning,
            stacklevel=3,
        )


def select_C(
    x: np.ndarray, y: np.ndarray, Cs=DEFAULT_CS, folds: int = 5, seed: int = 0, solver: str = "fast", device=None
) -> CVChoice:
    """Best C (ties -> smallest) by stratified `folds`-fold CV on (x, y) -> (C, its mean CV accuracy, the
    number of unconverged fits).

    Called with training data only; the tests check that no test row ever reaches it."""
    check_classes(y, "y")
    _check_folds(folds, y)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    cs = sorted(Cs)
    if _check_solver(solver) == "sklearn":
        fitted = [[_sklearn_fit(x[tr], y[tr], c, seed) for tr, _ in splits] for c in cs]
        scores = [np.mean([m.score(x[va], y[va]) for m, (_, va) in zip(row, splits)]) for row in fitted]
        unconverged = sum(not m.converged_ for row in fitted for m in row)
    else:
        problem = _Problem(x, y, torch.device(device) if device is not None else torch.device("cpu"))
        fold_set, fits = problem.path([tr for tr, _ in splits], cs)
        held_out = [(problem.x[torch.as_tensor(va, device=problem.x.device)], problem.codes(y[va])) for _, va in splits]
        scores = [
            np.mean([problem.accuracy(fold_set, b, f.weights, *held_out[b]) for b in range(len(splits))]) for f in fits
        ]
        unconverged = sum(int((~f.converged).sum()) for f in fits)
    _warn_unconverged(unconverged, "in the CV")
    best = int(np.argmax(scores))
    return CVChoice(float(cs[best]), float(scores[best]), unconverged)


def _sklearn_fit(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    """liblinear's primal solver; `converged_` records whether it stopped before max_iter."""
    model = make_pipeline(StandardScaler(), LinearSVC(C=c, dual=False, max_iter=10000, random_state=seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    model.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model


def _fit_and_score(x, y, test_x, test_y, c: float, Cs, seed: int, solver: str, device) -> tuple[float, int]:
    """Refit on all of (x, y) with C = `c`, score once on (test_x, test_y) -> (accuracy, unconverged fits).
    The fast solver walks the grid up to `c` for its warm starts."""
    if solver == "sklearn":
        model = _sklearn_fit(x, y, c, seed)
        return float(model.score(test_x, test_y)), int(not model.converged_)
    problem = _Problem(x, y, torch.device(device) if device is not None else torch.device("cpu"))
    folds, fits = problem.path([np.arange(len(x))], [v for v in sorted(Cs) if v <= c])
    test = torch.as_tensor(test_x, dtype=torch.float32, device=problem.x.device)
    return problem.accuracy(folds, 0, fits[-1].weights, test, problem.codes(test_y)), int((~fits[-1].converged).sum())


def _summary(per_seed, cs, cv, seeds, folds, solver, unconverged, **extra) -> dict:
    acc = np.asarray(per_seed, dtype=np.float64)
    return {
        "accuracy": {"mean": float(acc.mean()), "std": float(acc.std()), "per_seed": [float(a) for a in acc]},
        "C": cs,
        "cv_accuracy": cv,
        "seeds": list(seeds),
        "folds": folds,
        "solver": solver,
        "converged": unconverged == 0,
        "unconverged_fits": unconverged,
        **extra,
    }


def _check_seeds(seeds) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds: expected a non-empty sequence of ints, got ()")
    return tuple(check_int(f"seeds[{i}]", s) for i, s in enumerate(seeds))


def linear_probe(
    train_x, train_y, test_x, test_y, seeds=(0, 1, 2), folds: int = 5, Cs=DEFAULT_CS, solver: str = "fast", device=None
) -> dict:
    """Per seed: C by CV on the training split, refit on all of it, score once on the test split.

    `solver`: "fast" (batched torch, on `device`: default the device of the features if they are torch
    tensors, else the CPU) or "sklearn" (liblinear). -> {"accuracy": {"mean", "std" (population std over
    seeds), "per_seed"}, "C": [per seed], "cv_accuracy": [per seed], "seeds", "folds", "solver", "converged"
    (every fit converged), "unconverged_fits"}. Accuracies are fractions in [0, 1]."""
    device = device if device is not None else _device(train_x, test_x)
    train_x, train_y = _check(train_x, train_y, "train_x", "train_y")
    check_classes(train_y, "train_y")
    test_x, test_y = _check(test_x, test_y, "test_x", "test_y")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"test_x: expected {train_x.shape[1]} features like train_x, got {test_x.shape[1]}")
    _check_solver(solver)
    per_seed, cs, cv, unconverged = [], [], [], 0
    for seed in _check_seeds(seeds):
        c, score, missed = select_C(train_x, train_y, Cs, folds, seed, solver, device)
        accuracy, missed_refit = _fit_and_score(train_x, train_y, test_x, test_y, c, Cs, seed, solver, device)
        _warn_unconverged(missed_refit, "in the refit")
        per_seed.append(accuracy)
        cs.append(c)
        cv.append(score)
        unconverged += missed + missed_refit
    return _summary(per_seed, cs, cv, seeds, folds, solver, unconverged)


def cross_validated_probe(
    x, y, seeds=(0, 1, 2), folds: int = 5, Cs=DEFAULT_CS, solver: str = "fast", device=None
) -> dict:
    """For data without a test split: nested CV. Outer stratified folds give the accuracy; inside each outer
    training part, `select_C` picks C by its own k-fold CV, so a held-out fold never influences its C.

    -> the same dict as `linear_probe`; per seed, "C" is the C chosen most often over the outer folds,
    "cv_accuracy" the mean inner CV accuracy, and "C_per_fold" lists every choice."""
    device = device if device is not None else _device(x)
    x, y = _check(x, y, "x", "y")
    check_classes(y, "y")
    _check_folds(folds, y)
    _check_solver(solver)
    per_seed, cs, cv, per_fold, unconverged = [], [], [], [], 0
    for seed in _check_seeds(seeds):
        accs, chosen, scores = [], [], []
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            c, score, missed = select_C(x[tr], y[tr], Cs, folds, seed, solver, device)
            accuracy, missed_refit = _fit_and_score(x[tr], y[tr], x[te], y[te], c, Cs, seed, solver, device)
            _warn_unconverged(missed_refit, "in the refit")
            accs.append(accuracy)
            chosen.append(c)
            scores.append(score)
            unconverged += missed + missed_refit
        per_seed.append(float(np.mean(accs)))
        counts = Counter(chosen)
        cs.append(min(c for c in counts if counts[c] == max(counts.values())))
        cv.append(float(np.mean(scores)))
        per_fold.append(chosen)
    return _summary(per_seed, cs, cv, seeds, folds, solver, unconverged, C_per_fold=per_fold)


def probe_encoder(
    model,
    train_set,
    test_set=None,
    *,
    seeds=(0, 1, 2),
    folds: int = 5,
    Cs=DEFAULT_CS,
    batch_size: int = 64,
    num_points: int | None = None,
    progress: bool = True,
    solver: str = "fast",
) -> dict:
    """Features + probe per seed: each seed also fixes the point subsample / FPS start of the features, so the
    spread over seeds covers both the sampling and the fold split. Without `test_set`, nested CV on
    `train_set`. The fast solver runs on the model's device. -> the `linear_probe` dict."""
    device = next(model.parameters()).device
    per_seed, cs, cv, extra, unconverged = [], [], [], {}, 0
    for seed in _check_seeds(seeds):
        kw = {"batch_size": batch_size, "num_points": num_points, "seed": seed, "progress": progress}
        train_x, train_y = extract_features(model, train_set, desc=f"train features (seed {seed})", **kw)
        if test_set is None:
            result = cross_validated_probe(train_x, train_y, (seed,), folds, Cs, solver, device)
            extra.setdefault("C_per_fold", []).extend(result["C_per_fold"])
        else:
            test_x, test_y = extract_features(model, test_set, desc=f"test features (seed {seed})", **kw)
            result = linear_probe(train_x, train_y, test_x, test_y, (seed,), folds, Cs, solver, device)
        per_seed += result["accuracy"]["per_seed"]
        cs += result["C"]
        cv += result["cv_accuracy"]
        unconverged += result["unconverged_fits"]
    return _summary(per_seed, cs, cv, seeds, folds, solver, unconverged, **extra)


def probe_teacher(
    cache,
    labels,
    test_cache=None,
    test_labels=None,
    *,
    seeds=(0, 1, 2),
    folds: int = 5,
    Cs=DEFAULT_CS,
    solver: str = "fast",
    device=None,
) -> dict:
    """The teacher ceiling: the same probe on the teacher's own embeddings, averaged over each object's cached
    views (what a student that reproduced the teacher perfectly would carry). Without `test_cache`, nested
    CV on `cache`. -> the `linear_probe` dict."""
    x = np.asarray(cache.embeddings, dtype=np.float32).mean(axis=1)
    if test_cache is None:
        return cross_validated_probe(x, labels, seeds, folds, Cs, solver, device)
    test_x = np.asarray(test_cache.embeddings, dtype=np.float32).mean(axis=1)
    return linear_probe(x, labels, test_x, test_labels, seeds, folds, Cs, solver, device)
