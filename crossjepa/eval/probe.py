"""Linear probe: a linear SVM on standardised encoder features.

C is always chosen by stratified k-fold cross-validation on training data only (`select_C`); test data is
used exactly once per seed, to score the refitted classifier. The scaler is fitted inside each fold (a
pipeline), so no statistic of held-out data leaks into the fit either.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from .features import extract_features

DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 1, 6))


def _check(x, y, xname: str, yname: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{xname}: expected a non-empty (N, F) feature array, got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"{yname}: expected shape ({len(x)},) to match {xname}, got {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{xname}: expected finite features, found NaN or inf")
    return x, y


def _check_folds(folds, y: np.ndarray) -> None:
    smallest = min(Counter(y.tolist()).values())
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= smallest:
        raise ValueError(f"folds: expected an int in [2, {smallest}] (the smallest class in the data being split "
                         f"has {smallest} samples), got {folds!r}")


def _classifier(c: float, seed: int):
    return make_pipeline(StandardScaler(), LinearSVC(C=c, max_iter=10000, random_state=seed))


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    with warnings.catch_warnings():
        # A C at the top of the grid may stop at max_iter; CV then simply scores it as it is.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _classifier(c, seed).fit(x, y)


def select_C(x: np.ndarray, y: np.ndarray, Cs=DEFAULT_CS, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Best C (ties -> smallest) by stratified `folds`-fold CV on (x, y) -> (C, its mean CV accuracy).

    Called with training data only; the tests check that no test row ever reaches it."""
    _check_folds(folds, y)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    scores = [np.mean([_fit(x[tr], y[tr], c, seed).score(x[va], y[va]) for tr, va in splits]) for c in sorted(Cs)]
    best = int(np.argmax(scores))
    return float(sorted(Cs)[best]), float(scores[best])


def _summary(per_seed, cs, cv, seeds, folds, **extra) -> dict:
    acc = np.asarray(per_seed, dtype=np.float64)
    return {"accuracy": {"mean": float(acc.mean()), "std": float(acc.std()), "per_seed": [float(a) for a in acc]},
            "C": cs, "cv_accuracy": cv, "seeds": list(seeds), "folds": folds, **extra}


def _check_seeds(seeds) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds: expected a non-empty sequence of ints, got {seeds!r}")
    return seeds


def linear_probe(train_x, train_y, test_x, test_y, seeds=(0, 1, 2), folds: int = 5, Cs=DEFAULT_CS) -> dict:
    """Per seed: C by CV on the training split, refit on all of it, score once on the test split.

    -> {"accuracy": {"mean", "std" (population std over seeds), "per_seed"}, "C": [per seed],
        "cv_accuracy": [per seed], "seeds", "folds"}. Accuracies are fractions in [0, 1]."""
    train_x, train_y = _check(train_x, train_y, "train_x", "train_y")
    test_x, test_y = _check(test_x, test_y, "test_x", "test_y")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"test_x: expected {train_x.shape[1]} features like train_x, got {test_x.shape[1]}")
    per_seed, cs, cv = [], [], []
    for seed in _check_seeds(seeds):
        c, score = select_C(train_x, train_y, Cs, folds, seed)
        per_seed.append(_fit(train_x, train_y, c, seed).score(test_x, test_y))
        cs.append(c)
        cv.append(score)
    return _summary(per_seed, cs, cv, seeds, folds)


def cross_validated_probe(x, y, seeds=(0, 1, 2), folds: int = 5, Cs=DEFAULT_CS) -> dict:
    """For data without a test split: nested CV. Outer stratified folds give the accuracy; inside each outer
    training part, `select_C` picks C by its own k-fold CV, so a held-out fold never influences its C.

    -> the same dict as `linear_probe`; per seed, "C" is the C chosen most often over the outer folds,
    "cv_accuracy" the mean inner CV accuracy, and "C_per_fold" lists every choice."""
    x, y = _check(x, y, "x", "y")
    _check_folds(folds, y)
    per_seed, cs, cv, per_fold = [], [], [], []
    for seed in _check_seeds(seeds):
        accs, chosen, scores = [], [], []
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            c, score = select_C(x[tr], y[tr], Cs, folds, seed)
            accs.append(_fit(x[tr], y[tr], c, seed).score(x[te], y[te]))
            chosen.append(c)
            scores.append(score)
        per_seed.append(float(np.mean(accs)))
        counts = Counter(chosen)
        cs.append(min(c for c in counts if counts[c] == max(counts.values())))
        cv.append(float(np.mean(scores)))
        per_fold.append(chosen)
    return _summary(per_seed, cs, cv, seeds, folds, C_per_fold=per_fold)


def probe_encoder(model, train_set, test_set=None, *, seeds=(0, 1, 2), folds: int = 5, Cs=DEFAULT_CS,
                  batch_size: int = 64, num_points: int | None = None, progress: bool = True) -> dict:
    """Features + probe per seed: each seed also fixes the point subsample / FPS start of the features, so the
    spread over seeds covers both the sampling and the fold split. Without `test_set`, nested CV on
    `train_set`. -> the `linear_probe` dict."""
    per_seed, cs, cv, extra = [], [], [], {}
    for seed in _check_seeds(seeds):
        kw = dict(batch_size=batch_size, num_points=num_points, seed=seed, progress=progress)
        train_x, train_y = extract_features(model, train_set, desc=f"train features (seed {seed})", **kw)
        if test_set is None:
            result = cross_validated_probe(train_x, train_y, (seed,), folds, Cs)
            extra.setdefault("C_per_fold", []).extend(result["C_per_fold"])
        else:
            test_x, test_y = extract_features(model, test_set, desc=f"test features (seed {seed})", **kw)
            result = linear_probe(train_x, train_y, test_x, test_y, (seed,), folds, Cs)
        per_seed += result["accuracy"]["per_seed"]
        cs += result["C"]
        cv += result["cv_accuracy"]
    return _summary(per_seed, cs, cv, seeds, folds, **extra)


def probe_teacher(cache, labels, test_cache=None, test_labels=None, *, seeds=(0, 1, 2), folds: int = 5,
                  Cs=DEFAULT_CS) -> dict:
    """The teacher ceiling: the same probe on the teacher's own embeddings, averaged over each object's cached
    views (what a student that reproduced the teacher perfectly would carry). Without `test_cache`, nested
    CV on `cache`. -> the `linear_probe` dict."""
    x = np.asarray(cache.embeddings, dtype=np.float32).mean(axis=1)
    if test_cache is None:
        return cross_validated_probe(x, labels, seeds, folds, Cs)
    test_x = np.asarray(test_cache.embeddings, dtype=np.float32).mean(axis=1)
    return linear_probe(x, labels, test_x, test_labels, seeds, folds, Cs)
