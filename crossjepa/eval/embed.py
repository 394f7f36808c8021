"""Encoder features for users' own heads: `load_encoder` (Python) and `crossjepa embed` (files).

Both read out through the encoder's own `features()` method, so the read-out is defined in one place
(crossjepa/models/encoder.py) and `embed`'s rows are exactly what `load_encoder(path)(points)` returns for the
same points. `embed` reads each cloud at the model's point count with the reader's deterministic resampling
(crossjepa/data/base.py) and feeds it as is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..atomic import atomic_target, write_json
from ..data import make_loader, open_dataset
from ..train.checkpoint import load_pretrained


class FeatureEncoder(nn.Module):
    """(B, N, 3) points -> (B, F) features (`encoder.features`); `tokens()` gives all output tokens
    (B, 1 + groups, width), cls first. Returned in eval mode; `.encoder` is the trainable point encoder."""

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
    """The point encoder of a pretrained checkpoint (model.safetensors written by `crossjepa pretrain`)."""
    return FeatureEncoder(load_pretrained(path, device=device).encoder).eval()


def sidecar_paths(out: str | Path) -> dict[str, Path]:
    """Files written beside FEATS.npy: FEATS.labels.npy (int64) and FEATS.json (names, classes, settings)."""
    out = Path(out)
    return {"features": out, "labels": out.with_suffix(".labels.npy"), "meta": out.with_suffix(".json")}


@torch.no_grad()
def embed_dataset(
    encoder: FeatureEncoder,
    dataset,
    out: str | Path,
    *,
    tokens: bool = False,
    num_points: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    meta: dict | None = None,
) -> dict[str, Path]:
    """Write one row per object of `dataset` (in order) to OUT (.npy, float32, memory-mappable: (N, F), or
    (N, 1 + groups, width) with `tokens`), labels and names beside it. Every file appears atomically.
    Each cloud's first `num_points` points (default the encoder's) are fed in their stored order; `seed` drives
    the FPS start of a tokenizer set to a random start (no effect otherwise)."""
    paths = sidecar_paths(out)
    if paths["features"].suffix != ".npy":
        raise ValueError(f"--out {out}: expected a .npy file name")
    if len(dataset) == 0:
        raise ValueError("--data: expected at least one object, got an empty dataset")
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    loader = make_loader(
        dataset, batch_size, shuffle=False, num_points=num_points or encoder.num_points, device=device, num_workers=0
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    labels = np.empty(len(dataset), dtype=np.int64)
    rows = None
    with atomic_target(paths["features"]) as tmp:
        for batch in tqdm(loader, desc="embed", unit="batch", disable=not progress):
            points = batch["points"]
            feats = (encoder.tokens(points, generator) if tokens else encoder(points, generator)).float().cpu()
            if rows is None:
                rows = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=np.float32, shape=(len(dataset), *feats.shape[1:])
                )
            index = batch["index"].numpy()
            rows[index] = feats.numpy()
            labels[index] = batch["label"].numpy()
        rows.flush()
        shape = list(rows.shape)
        del rows  # close the mapping before the rename
    with atomic_target(paths["labels"]) as tmp:
        np.save(tmp, labels)
    names = getattr(dataset, "names", None)
    write_json(
        paths["meta"],
        {
            **(meta or {}),
            "readout": "tokens" if tokens else "features",
            "shape": shape,
            "seed": seed,
            "names": [str(n) for n in names] if names is not None else [str(i) for i in range(len(dataset))],
            "classes": getattr(dataset, "classes", None),
        },
    )
    return paths


def run_embed(
    data: str,
    checkpoint: str,
    out: str,
    *,
    split: str = "train",
    tokens: bool = False,
    num_points: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device="auto",
    progress: bool = True,
) -> dict[str, Path]:
    """`crossjepa embed`."""
    from ..device import resolve_device

    dev = resolve_device(device)
    encoder = load_encoder(checkpoint, device=dev)
    num_points = num_points or encoder.num_points
    dataset = open_dataset(data, split=split, num_points=num_points)
    return embed_dataset(
        encoder,
        dataset,
        out,
        tokens=tokens,
        num_points=num_points,
        batch_size=batch_size,
        seed=seed,
        device=dev,
        progress=progress,
        meta={"checkpoint": str(checkpoint), "data": data, "split": split, "num_points": num_points},
    )
