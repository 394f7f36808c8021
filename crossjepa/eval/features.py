"""The one feature extractor: what the probe, `crossjepa embed`, few-shot's linear head and
`crossjepa.load_encoder` read out of a point encoder.

- Points: each cloud is taken to `num_points` (default: the encoder's) by the rule of data/subsample.py
  (fixed_size_batches): a cloud that has exactly `num_points` is used as stored, an FPS-ordered one keeps its
  prefix, and every other one, in dataset order, takes the next random subset of a generator seeded with `seed`.
  So `crossjepa embed --seed S` writes the probe's features of seed S, and for clouds of `num_points` points both
  equal `load_encoder(path)(points)`.
- Read-out: `features` (B, 2W), concat(max, mean) of the patch tokens (models/encoder.py), or every output
  token (B, 1 + G, W) with `tokens`.
- Batching and device: batches of `batch_size` clouds are built on the host and moved to `device` (default: the
  encoder's); features come back to the host with `.cpu()`; ids and labels never leave it.
- Randomness: a tokenizer with a random FPS start draws it from a generator seeded with `seed` on `device`,
  batch after batch (on a GPU the draws then depend on the batch size too).
The encoder runs in eval mode without gradients; its previous mode is restored afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.subsample import fixed_size_batches


class FeatureEncoder(nn.Module):
    """(B, N, 3) points -> (B, F) features (`encoder.features`); `tokens()` gives all output tokens
    (B, 1 + groups, width), cls first. The points are used as given (no subsampling). `.encoder` is the point
    encoder."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    @property
    def num_points(self) -> int:
        """The cloud size the encoder was trained with."""
        return self.encoder.tokenizer.cfg.num_points

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.encoder.features(points, generator)

    def tokens(self, points: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.encoder(points, generator)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> FeatureEncoder:
    """The point encoder of a pretrained checkpoint (model.safetensors written by `crossjepa pretrain`), in eval
    mode."""
    from ..train.checkpoint import load_pretrained

    return FeatureEncoder(load_pretrained(path, device=device).encoder).eval()


def feature_encoder(model: nn.Module) -> FeatureEncoder:
    """`model` (a CrossJEPA model, a point encoder or a FeatureEncoder) as a FeatureEncoder."""
    if isinstance(model, FeatureEncoder):
        return model
    encoder = getattr(model, "encoder", model)
    if not hasattr(encoder, "features"):
        raise TypeError(
            f"model: expected a CrossJEPA model or a point encoder with .features, got {type(model).__name__}"
        )
    return FeatureEncoder(encoder)


@torch.no_grad()
def iter_features(
    model: nn.Module,
    dataset,
    *,
    tokens: bool = False,
    num_points: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = False,
    desc: str = "features",
) -> Iterator[tuple[np.ndarray, torch.Tensor, np.ndarray]]:
    """Yields (object ids int64 (B,), features float32 on the CPU, labels int64 (B,)) batch by batch, in
    dataset order (see the module docstring)."""
    encoder = feature_encoder(model)
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    readout = encoder.tokens if tokens else encoder
    generator = torch.Generator(device=device).manual_seed(seed)
    batches = fixed_size_batches(
        dataset, num_points or encoder.num_points, seed=seed, batch_size=batch_size, device=device
    )
    was_training = encoder.encoder.training
    encoder.encoder.eval()
    try:
        total = -(-len(dataset) // batch_size)
        for ids, points, labels in tqdm(batches, desc=desc, unit="batch", total=total, disable=not progress):
            yield ids, readout(points, generator).float().cpu(), labels
    finally:
        encoder.encoder.train(was_training)


def extract_features(model: nn.Module, dataset, **options) -> tuple[np.ndarray, np.ndarray]:
    """-> (features float32 (N, F), labels int64 (N,)) of every object of `dataset`; `options` as
    `iter_features`'s."""
    feats, labels = [], []
    for _, x, y in iter_features(model, dataset, **options):
        feats.append(x)
        labels.append(y)
    if not feats:
        raise ValueError("dataset: expected at least one object, got an empty dataset")
    return torch.cat(feats).numpy(), np.concatenate(labels)
