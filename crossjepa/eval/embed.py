"""`crossjepa embed`: the encoder features of every object of a dataset, written to a memory-mappable .npy file.

The rows come from the one feature extractor (crossjepa/eval/features.py): `--seed S` writes the probe's
features of seed S, and rows of clouds of the model's point count equal `crossjepa.load_encoder(path)(points)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_target, write_json
from ..data import contract, open_dataset
from .features import FeatureEncoder, iter_features, load_encoder


def sidecar_paths(out: str | Path) -> dict[str, Path]:
    """Files written beside FEATS.npy: FEATS.labels.npy (int64) and FEATS.json (names, classes, settings)."""
    out = Path(out)
    return {"features": out, "labels": out.with_suffix(".labels.npy"), "meta": out.with_suffix(".json")}


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
    (N, 1 + groups, width) with `tokens`), labels and names beside it. Every file appears atomically. The rows
    are `iter_features`'s for these options."""
    paths = sidecar_paths(out)
    if paths["features"].suffix != ".npy":
        raise ValueError(f"--out {out}: expected a .npy file name")
    if len(dataset) == 0:
        raise ValueError("--data: expected at least one object, got an empty dataset")
    encoder = encoder.to(device)
    labels = np.empty(len(dataset), dtype=np.int64)
    rows = None
    with atomic_target(paths["features"]) as tmp:
        batches = iter_features(
            encoder,
            dataset,
            tokens=tokens,
            num_points=num_points,
            seed=seed,
            batch_size=batch_size,
            device=device,
            progress=progress,
            desc="embed",
        )
        for ids, feats, batch_labels in batches:
            if rows is None:
                rows = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=np.float32, shape=(len(dataset), *feats.shape[1:])
                )
            rows[ids] = feats.numpy()
            labels[ids] = batch_labels
        rows.flush()
        shape = list(rows.shape)
        del rows  # close the mapping before the rename
    with atomic_target(paths["labels"]) as tmp:
        np.save(tmp, labels)
    write_json(
        paths["meta"],
        {
            **(meta or {}),
            "readout": "tokens" if tokens else "features",
            "shape": shape,
            "seed": seed,
            "names": contract.names(dataset),
            "classes": contract.classes(dataset),
        },
    )
    return paths


def run_embed(cfg, progress: bool = True) -> dict[str, Path]:
    """`crossjepa embed` (cfg: eval.config.EmbedConfig)."""
    from ..device import resolve_device

    device = resolve_device(cfg.device)
    encoder = load_encoder(cfg.checkpoint, device=device)
    num_points = cfg.num_points or encoder.num_points
    meta = {"checkpoint": str(cfg.checkpoint), "data": cfg.data, "split": cfg.split, "num_points": num_points}
    options = {"tokens": cfg.tokens, "batch_size": cfg.batch_size, "seed": cfg.seed, "progress": progress}
    dataset = open_dataset(cfg.data, split=cfg.split)
    return embed_dataset(encoder, dataset, cfg.out, num_points=num_points, device=device, meta=meta, **options)
