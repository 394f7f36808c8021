"""Encoder features for a whole dataset: fixed-size point subsamples, batched, no grad."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.subsample import subsample
from ..validate import check_int


def _encoder_of(model: nn.Module) -> nn.Module:
    encoder = getattr(model, "encoder", model)
    if not hasattr(encoder, "features"):
        raise TypeError(
            f"model: expected a CrossJEPA model or a point encoder with .features, got {type(model).__name__}"
        )
    return encoder


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset,
    *,
    batch_size: int = 64,
    num_points: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """-> (features float32 (N, 2W), labels int64 (N,)) for every item of `dataset` ({"points", "label"}).

    `seed` fixes the random point subsample of each cloud (to `num_points`, default the tokenizer's) and a
    random FPS start if the tokenizer uses one, so two calls with the same seed give the same features.
    `device` is where the batches go (default: the encoder's device; the encoder must already be there).
    The encoder runs in eval mode; its previous mode is restored afterwards.
    """
    encoder = _encoder_of(model)
    check_int("batch_size", batch_size, 1)
    num_points = num_points or encoder.tokenizer.cfg.num_points
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    fps_generator = torch.Generator(device=device).manual_seed(seed)
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    try:
        for start in tqdm(range(0, len(dataset), batch_size), desc=desc, unit="batch", disable=not progress):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            points = torch.stack(
                [subsample(torch.as_tensor(it["points"]).float(), num_points, generator) for it in items]
            ).to(device)
            feats.append(encoder.features(points, fps_generator).float().cpu())
            labels.extend(int(it["label"]) for it in items)
    finally:
        encoder.train(was_training)
    width = 2 * encoder.width
    x = torch.cat(feats).numpy() if feats else np.zeros((0, width), np.float32)
    return x, np.asarray(labels, dtype=np.int64)
