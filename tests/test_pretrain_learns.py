"""Pretraining learns: on objects it never trained on, the model explains the teacher target clearly better
than the constant predictor, and better than it did before training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossjepa.train.heldout import split_heldout

pytestmark = pytest.mark.usefixtures("one_thread")
DATA = "synthetic:120"


def test_split_heldout_is_seeded_disjoint_and_never_empty():
    train, held = split_heldout(100, 0.05, seed=3)
    assert len(held) == 5 and len(train) == 95 and not set(train) & set(held)
    assert np.array_equal(held, split_heldout(100, 0.05, seed=3)[1])
    assert not np.array_equal(held, split_heldout(100, 0.05, seed=4)[1])
    assert len(split_heldout(10, 0.01, seed=0)[1]) == 1 and len(split_heldout(10, 0.0, seed=0)[1]) == 0


def test_heldout_r2_rises_clearly_above_the_constant_predictor(tmp_path):
    from crossjepa.data import open_dataset
    from crossjepa.teacher import build_cache, load_teacher
    from crossjepa.train.config import OptimConfig, TrainConfig
    from crossjepa.train.pretrain import pretrain

    # A random-init ResNet's pooled features depend on the object's shape (random-feature extractor), so they
    # are a learnable target without pretrained weights.
    teacher = load_teacher("resnet10t", random_init=True, image_size=48)
    cache = build_cache(
        open_dataset(DATA, split="train"), tmp_path / "cache", teacher, num_views=4, batch_size=64, progress=False
    )
    cfg = TrainConfig(
        data=DATA,
        cache=str(cache),
        out=str(tmp_path / "run"),
        preset="tiny",
        batch_size=16,
        max_steps=240,
        heldout_fraction=0.1,
        log_every=20,
        checkpoint_every=240,
        device="cpu",
        num_workers=0,
        optim=OptimConfig(lr=1e-3, warmup_fraction=0.1),
    )
    pretrain(cfg, progress=False)
    records = [json.loads(x) for x in (tmp_path / "run" / "heldout.jsonl").read_text().splitlines()]
    assert [r["objects"] for r in records] == [12] * len(records) and records[-1]["step"] == 240
    first, last = records[0], records[-1]
    assert last["const_r2"] <= 0.0  # the cache mean, standardised: no object-specific information
    assert last["r2"] > last["const_r2"] + 0.2, records
    assert last["r2"] > first["r2"] and last["cosine"] > first["cosine"], records
