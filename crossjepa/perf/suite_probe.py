"""The `probe` benchmark suite: the linear probe with its defaults (C from 6 values by 5-fold CV on the training
split, 3 seeds) by the fast torch solver and by scikit-learn's liblinear, on features shaped like the teacher
ceiling's (1,280-d, 10 classes, ModelNet10-sized splits). The fast row's note carries both test accuracies, and
it agrees when they are within 1 point."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .case import Case, Settings


def probe_features(
    rows: int, dim: int = 1280, classes: int = 10, seed: int = 0, rank: int = 256, separation: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Features that look like pooled network embeddings: classes differ in a `rank`-dimensional subspace
    with a decaying spectrum, mixed into `dim` correlated, non-negative (softplus) features. The subspace
    and the class means are fixed (the same "world" for every `seed`); `seed` draws the rows."""
    world = np.random.default_rng(1234)
    spectrum = 1.0 / np.sqrt(1 + np.arange(rank) / 8)
    mixing = world.normal(size=(rank, dim)) * spectrum[:, None] / np.sqrt(rank)
    means = world.normal(size=(classes, rank)) * separation
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    x = (means[y] + rng.normal(size=(rows, rank))) @ mixing + 0.05 * rng.normal(size=(rows, dim))
    x = np.logaddexp(0, 4 * x + 1) / 4
    return x.astype(np.float32), y


def probe_cases(s: Settings) -> Iterator[Case]:
    from ..eval.probe import linear_probe

    if s.quick:
        train, test, dim, classes, protocol = 300, 120, 64, 4, {"seeds": (0,), "folds": 3}
    else:
        train, test, dim, classes, protocol = 4000, 900, 1280, 10, {}
    train_x, train_y = probe_features(train, dim, classes, seed=0)
    test_x, test_y = probe_features(test, dim, classes, seed=1)
    if s.cuda:
        import torch

        train_x, test_x = torch.as_tensor(train_x, device=s.device), torch.as_tensor(test_x, device=s.device)
    shape = f"{train}+{test} rows x {dim}, {classes} classes, " + (
        "1 seed, 3 folds" if s.quick else "defaults: 3 seeds, 5 folds, 6 C"
    )
    accuracy = {}

    def run(solver: str):
        def probe():
            result = linear_probe(train_x, train_y, test_x, test_y, solver=solver, **protocol)
            accuracy[solver] = result["accuracy"]

        return lambda: probe

    yield Case(
        "linear probe",
        "sklearn liblinear",
        shape,
        "LinearSVC(dual=False), 1 thread",
        1,
        "probes",
        run("sklearn"),
        note="accuracy: see the fast row",
        repeats=(0, 1),
    )
    fast = run("fast")()
    fast()  # untimed: its accuracy goes into the note beside liblinear's
    theirs, ours = accuracy.get("sklearn"), accuracy["fast"]
    note = f"test accuracy fast {100 * ours['mean']:.1f} +- {100 * ours['std']:.1f} %" + (
        f", sklearn {100 * theirs['mean']:.1f} +- {100 * theirs['std']:.1f} %" if theirs else ""
    )
    yield Case(
        "linear probe",
        "fast",
        shape,
        f"torch batched Newton-CG ({s.device.type})",
        1,
        "probes",
        lambda: fast,
        ("sklearn liblinear",),
        note=note,
        repeats=(0, 1) if not s.quick else None,
        check=None if theirs is None else (lambda: abs(ours["mean"] - theirs["mean"]) <= 0.01),
    )
