"""The probe's linear SVM, solved in torch for many folds, classes and C values at once.

The objective is scikit-learn's `LinearSVC(dual=False)` primal, per class (one-vs-rest) and per C:

    min_w  1/2 |w|^2 + C sum_i max(0, 1 - y_i <w, [x_i, 1]>)^2

with the intercept as the weight of a constant feature 1 (`intercept_scaling=1`), so it is regularised like
every other weight. It is solved by a truncated Newton method (Newton-CG with an Armijo line search, the
method of liblinear's TRON without the trust region) for every (fold, class) column of one C together:
Hessian-vector products are two batched matrix products X^T (D * (X V)). What makes it fast:
- each fold's features are standardised once and turned to their principal axes, both from that fold's
  training rows only; a rotation leaves the objective and its minimiser unchanged, and in that basis the
  diagonal of the Hessian is a good preconditioner for the conjugate-gradient steps;
- at large C, where few rows stay inside the margin, and whenever there are no more rows than features, exact
  Newton steps on the active set (a system the size of that set, from the Gram matrix) replace the conjugate
  gradients that would crawl there;
- C values are solved in increasing order, each warm-started from the previous one's solution.
A column stops when its gradient norm is at most `tol * max(min(#pos, #neg), 1) / #rows` times the gradient
norm at w = 0 (liblinear's primal stopping rule); columns that reach `max_iter` Newton steps unconverged are
reported, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CG_RELATIVE_RESIDUAL = 0.1  # each Newton step solves its linear system to 10 % (liblinear's choice)
MAX_CG_STEPS = 250
# Exact active-set Newton steps come first when there are no more rows than features, or when a warm start has
# at most this fraction of rows inside the margin.
ACTIVE_SET_FRACTION = 0.5
ACTIVE_SET_STEPS = 30
COLUMNS_PER_SOLVE = 8  # active-set systems factorised together (bounds the memory of the batch)
REFINEMENTS = 3


@dataclass
class Folds:
    """Fold training sets standardised, rotated and padded into one batch: rows (B, n, p) with the constant
    column last, `mask` (B, n, 1) 1 for real rows, and what is needed to map other rows the same way."""

    rows: torch.Tensor
    mask: torch.Tensor
    mean: torch.Tensor  # (B, d)
    scale: torch.Tensor  # (B, d)
    rotation: torch.Tensor  # (B, d, d)
    _gram: torch.Tensor | None = None

    @property
    def gram(self) -> torch.Tensor:
        """(B, n, n) inner products of the rows, computed once (the active-set Newton steps read it)."""
        if self._gram is None:
            self._gram = self.rows @ self.rows.transpose(1, 2)
        return self._gram

    def transform(self, b: int, x: torch.Tensor) -> torch.Tensor:
        """Rows `x` (m, d) of any split in fold `b`'s basis, constant column appended."""
        z = ((x - self.mean[b]) / self.scale[b]) @ self.rotation[b]
        return torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype, device=z.device)], 1)


def _standardised(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (rows standardised with their own mean and population std, mean, std; std 1 for a constant feature,
    as StandardScaler)."""
    mean = part.mean(0)
    scale = part.std(0, correction=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (part - mean) / scale, mean, scale


def standardise(x: torch.Tensor, train_rows: list[torch.Tensor]) -> Folds:
    """One `Folds` batch from the rows of `x` (N, d) indexed by each element of `train_rows`: each part
    standardised with its own statistics and turned to its own principal axes (the eigenvectors of its
    standardised Gram matrix), so nothing outside a fold's training rows shapes its basis."""
    n = max(len(r) for r in train_rows)
    batch, masks, means, scales, rotations = [], [], [], [], []
    for r in train_rows:
        z, mean, scale = _standardised(x[r])
        rotation = torch.linalg.eigh(z.T @ z)[1]
        z = torch.cat([z @ rotation, torch.ones(len(z), 1, dtype=x.dtype, device=x.device)], 1)
        pad = n - len(z)
        batch.append(torch.nn.functional.pad(z, (0, 0, 0, pad)))
        masks.append(
            torch.cat(
                [
                    torch.ones(len(z), 1, dtype=x.dtype, device=x.device),
                    torch.zeros(pad, 1, dtype=x.dtype, device=x.device),
                ]
            )
        )
        means.append(mean)
        scales.append(scale)
        rotations.append(rotation)
    return Folds(
        torch.stack(batch), torch.stack(masks), torch.stack(means), torch.stack(scales), torch.stack(rotations)
    )


def one_vs_rest_targets(y: torch.Tensor, classes: int) -> torch.Tensor:
    """(N,) labels in [0, classes) -> (N, K) targets +-1; K = 1 for two classes (class 1 positive), as
    LinearSVC fits a single classifier for a binary problem."""
    columns = torch.arange(1 if classes == 2 else classes, device=y.device) + (1 if classes == 2 else 0)
    return torch.where(y[:, None] == columns, 1.0, -1.0)


def predict(scores: torch.Tensor) -> torch.Tensor:
    """Decision values (..., K) -> class indices; one column: positive means class 1."""
    return (scores[..., 0] > 0).long() if scores.shape[-1] == 1 else scores.argmax(-1)


@dataclass
class Fit:
    weights: torch.Tensor  # (B, p, K)
    converged: torch.Tensor  # (B, K) bool
    newton_steps: int


def fit(
    folds: Folds,
    targets: torch.Tensor,
    C: float,
    warm: torch.Tensor | None = None,
    *,
    tol: float = 1e-4,
    max_iter: int = 100,
) -> Fit:
    """Minimise the objective above for one C on every (fold, class) column: `targets` (B, n, K) +-1 (any
    value on padded rows), `warm` (B, p, K) a starting point.

    The weights, margins and gradient are float64 (the gradient is a difference of two nearly equal terms
    near the optimum); the conjugate-gradient steps, which need only 10 % accuracy, run in the rows' dtype."""
    x = folds.rows
    x64, mask = x.double(), folds.mask.double()
    y = targets.double() * mask
    c2 = 2.0 * C
    w = (
        torch.zeros(x.shape[0], x.shape[2], y.shape[2], dtype=torch.float64, device=x.device)
        if warm is None
        else warm.double().clone()
    )
    x_t, x2_t = x.transpose(1, 2), (x * x).transpose(1, 2)
    positives = (y > 0).sum(1).double()
    rows = mask.sum(1)
    balance = torch.clamp(torch.minimum(positives, rows - positives), min=1) / rows
    stop = tol * balance * (c2 * x64.transpose(1, 2) @ y).norm(dim=1)  # (B, K): tol x |gradient at w = 0|
    inside = float(((y * (x64 @ w) < 1) & (mask > 0)).sum() / (rows.sum() * y.shape[2]))
    if x.shape[1] <= x.shape[2] or (warm is not None and inside <= ACTIVE_SET_FRACTION):
        w = _active_set_newton(folds, x64, y, mask, C, w)  # the active-set systems are the smaller ones
    for step in range(max_iter + 1):
        z = x64 @ w
        slack = torch.relu(1 - y * z) * mask
        grad = w - c2 * (x64.transpose(1, 2) @ (y * slack))
        converged = grad.norm(dim=1) <= stop
        if bool(converged.all()) or step == max_iter:
            break
        active = (slack > 0).to(x.dtype)
        direction = _conjugate_gradient(
            x, x_t, active, c2, grad.to(x.dtype), 1 + c2 * (x2_t @ active), ~converged
        ).double()
        t = _armijo_step(w, z, y, mask, c2, grad, direction, (x @ direction.to(x.dtype)).double())
        w = w + t[:, None, :] * direction
    return Fit(w.to(x.dtype), converged, step)


def _active_set_newton(folds: Folds, x64, y, mask, C: float, w):
    """Exact Newton steps from `w` for columns whose active set (rows inside the margin) is small, as at large C
    where conjugate gradients crawl: on a fixed active set I the objective is a least-squares problem whose
    minimiser is w = X_I^T b with (X_I X_I^T + I / 2C) b = y_I, a system the size of the active set, taken from
    the Gram matrix. Steps until no column's active set changes (each is then its exact optimum); the
    Newton-CG loop after it checks the gradient either way."""
    gram, (batch, _, columns) = folds.gram, y.shape
    eye = torch.eye(max(1, y.shape[1]), dtype=gram.dtype, device=y.device)
    beta = torch.zeros_like(y)
    z, previous = x64 @ w, None
    for _ in range(ACTIVE_SET_STEPS):
        active = (y * z < 1) & (mask > 0)
        if previous is not None and torch.equal(active, previous):
            break
        previous = active
        pairs = [(b, k) for b in range(batch) for k in range(columns)]
        for start in range(0, len(pairs), COLUMNS_PER_SOLVE):
            chunk = pairs[start : start + COLUMNS_PER_SOLVE]
            index = [active[b, :, k].nonzero().squeeze(1) for b, k in chunk]
            size = max(1, max(len(i) for i in index))
            systems = eye[:size, :size].repeat(len(chunk), 1, 1)  # padding: identity rows, zero right-hand side
            rhs = torch.zeros(len(chunk), size, 1, dtype=torch.float64, device=y.device)
            picked = torch.zeros(len(chunk), size, x64.shape[2], dtype=torch.float64, device=y.device)
            for j, ((b, k), i) in enumerate(zip(chunk, index)):
                systems[j, : len(i), : len(i)] = gram[b][i[:, None], i[None, :]] + eye[: len(i), : len(i)] / (2 * C)
                rhs[j, : len(i), 0] = y[b, i, k]
                picked[j, : len(i)] = x64[b, i]
            solution = _solve_refined(systems, rhs, picked, C)
            for j, ((b, k), i) in enumerate(zip(chunk, index)):
                beta[b, :, k] = 0
                beta[b, i, k] = solution[j, : len(i), 0]
        w = x64.transpose(1, 2) @ beta
        z = x64 @ w  # float64: rows near the margin must not flip on rounding
    return w


def _solve_refined(systems, rhs, picked, C: float):
    """Solve `systems` b = rhs (float32, from the float32 Gram matrix) by a float32 Cholesky factor (float64 where
    float32 cannot factorise it), refined until b is float64-accurate against exact products X_I (X_I^T b)."""
    factor, info = torch.linalg.cholesky_ex(systems)
    if bool((info != 0).any()):
        factor = torch.linalg.cholesky(systems.double())
    solution = torch.cholesky_solve(rhs.to(factor.dtype), factor).double()
    for _ in range(REFINEMENTS):
        residual = rhs - picked @ (picked.transpose(1, 2) @ solution) - solution / (2 * C)
        solution = solution + torch.cholesky_solve(residual.to(factor.dtype), factor).double()
    return solution


def _conjugate_gradient(x, x_t, active, c2, grad, precond, todo):
    """Approximately solve (I + c2 X^T A X) d = -grad per column by preconditioned CG; columns not in `todo`
    get d = 0."""
    d = torch.zeros_like(grad)
    r = torch.where(todo[:, None, :], -grad, torch.zeros_like(grad))
    s = r / precond
    p = s.clone()
    rs = (r * s).sum(1)
    target = CG_RELATIVE_RESIDUAL * r.norm(dim=1)
    running = todo.clone()
    for _ in range(MAX_CG_STEPS):
        hp = p + c2 * (x_t @ (active * (x @ p)))
        curvature = (p * hp).sum(1)
        alpha = torch.where(
            running, rs / torch.where(running, curvature, torch.ones_like(curvature)), torch.zeros_like(rs)
        )
        d += alpha[:, None, :] * p
        r -= alpha[:, None, :] * hp
        running &= r.norm(dim=1) > target
        if not bool(running.any()):
            break
        s = r / precond
        rs_next = (r * s).sum(1)
        beta = torch.where(running, rs_next / torch.where(running, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        rs = rs_next
        p = s + beta[:, None, :] * p
    return d


def _armijo_step(w, z, y, mask, c2, grad, direction, xd, shrink: float = 0.5, tries: int = 40):
    """Per column, the largest t in 1, 1/2, 1/4, ... with sufficient decrease (0 for a zero direction). The
    decrease f(w + t d) - f(w) is summed from per-row differences, not taken between two large totals, so it
    stays exact enough in float32 near the optimum."""
    wd, dd = (w * direction).sum(1), (direction * direction).sum(1)
    slack = torch.relu(1 - y * z) * mask
    slope = (grad * direction).sum(1)
    t = torch.ones_like(slope)
    accepted = slope >= 0  # nothing to gain along this column's direction: it stays (t is zeroed below)
    for _ in range(tries):
        moved = torch.relu(1 - y * (z + t[:, None, :] * xd)) * mask
        change = t * wd + 0.5 * t * t * dd + 0.5 * c2 * ((moved - slack) * (moved + slack)).sum(1)
        accepted |= change <= 1e-2 * t * slope
        if bool(accepted.all()):
            break
        t = torch.where(accepted, t, t * shrink)
    return torch.where((slope < 0) & accepted, t, torch.zeros_like(t))
