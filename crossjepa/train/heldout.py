"""How much of the teacher target the model explains on objects it never trained on.

Pretraining keeps a seeded fraction of the objects out of its batches (drawn from outside the unseen objects,
data/carve.py, which neither training nor this score ever uses); after every epoch the model predicts
every cached view of those objects (no augmentation) and we log, in the standardised target space the loss
uses: R^2 (1 - residual / total sum of squares, pooled over dimensions), the mean cosine similarity, and the R^2
of the constant predictor that always outputs the cache mean (0 in that space), the baseline a model must
beat to have learned anything object-specific.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.subsample import fixed_size_batches
from ..models.loss import standardize


def split_heldout(num_objects: int, fraction: float, seed: int, unseen=()) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, held-out ids), both sorted and both outside `unseen` (the objects kept out of pretraining
    altogether): a seeded `fraction` of the other objects is held out (at least one when fraction > 0, never
    all). Without `unseen`, the same draw as before unseen objects existed."""
    candidates = np.setdiff1d(np.arange(num_objects), np.asarray(unseen, dtype=np.int64))
    count = min(len(candidates) - 1, max(1, round(fraction * len(candidates)))) if fraction > 0 else 0
    held = np.sort(candidates[np.random.default_rng([seed, 7919]).permutation(len(candidates))[:count]])
    return np.setdiff1d(candidates, held), held


@torch.no_grad()
def heldout_scores(
    model: torch.nn.Module,
    dataset,
    ids: np.ndarray,
    cache,
    mean: torch.Tensor,
    std: torch.Tensor,
    num_points: int,
    batch_size: int = 32,
) -> dict:
    """{"r2", "cosine", "const_r2"} of `model`'s predictions for every cached view of objects `ids`."""
    device = mean.device
    histograms = model.config.condition.use_histogram  # the cache's are read only when the model uses them
    was_training = model.training
    model.eval()
    # The feature extractor's clouds (seed 0): the same points at every evaluation.
    batches = fixed_size_batches(dataset, num_points, batch_size=batch_size, ids=ids, device=device)
    targets, preds = [], []
    try:
        for rows, points, _ in batches:
            poses = torch.from_numpy(np.asarray(cache.poses[rows])).to(device)
            hist = torch.from_numpy(np.asarray(cache.histograms[rows])).to(device) if histograms else None
            goal = standardize(torch.from_numpy(np.asarray(cache.embeddings[rows])).to(device), mean, std)
            pred = model(points, poses, hist).float()
            targets.append(goal.reshape(-1, goal.shape[-1]).double().cpu())
            preds.append(pred.reshape(-1, pred.shape[-1]).double().cpu())
    finally:
        model.train(was_training)
    y, p = torch.cat(targets), torch.cat(preds)
    total = ((y - y.mean(0)) ** 2).sum()
    return {
        "r2": float(1 - ((y - p) ** 2).sum() / total),
        "const_r2": float(1 - (y**2).sum() / total),
        "cosine": float(torch.nn.functional.cosine_similarity(p, y, dim=-1).mean()),
    }
