"""Training-loop guards that need no teacher cache: TrainConfig validation and the loaders' fast-forward
(a resumed epoch starts at its next batch without reading the batches before it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crossjepa.config_io import apply_overrides
from crossjepa.data import make_loader
from crossjepa.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "override, needle",
    [
        ("log_every=0", "log_every: expected a positive int, got 0"),
        ("checkpoint_every=0", "checkpoint_every: expected a positive int, got 0"),
        ("batch_size=-4", "batch_size"),
        ("max_steps=0", "max_steps"),
        ("num_workers=-1", "num_workers"),
        ("nonfinite=ignore", "nonfinite"),
        ("device=gpu", "device"),
        ("optim.lr=0", "optim.lr"),
        ("optim.betas=[0.9, 1.5]", "optim.betas"),
        ("optim.warmup_fraction=2", "optim.warmup_fraction"),
        ("optim.grad_clip=-1", "optim.grad_clip"),
    ],
)
def test_bad_config_values_are_one_line_errors(override, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[")) as err:
        apply_overrides(TrainConfig(), [override])
    assert "\n" not in str(err.value)


def test_bad_config_values_fail_directly_too():
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig(log_every=0)
    assert apply_overrides(TrainConfig(), ["nonfinite=skip"]).nonfinite == "skip"


def test_cli_rejects_log_every_zero_with_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossjepa",
            "pretrain",
            "--data",
            "synthetic:8",
            "--cache",
            str(tmp_path),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "log_every=0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == "crossjepa pretrain: error: log_every: expected a positive int, got 0"


class SpyDataset:
    """Clouds of 40 seeded points; counts the objects read."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(7)
        self.clouds = torch.randn(n, 40, 3, generator=g)
        self.reads = 0

    def __len__(self):
        return len(self.clouds)

    def __getitem__(self, i):
        self.reads += 1
        return {"points": self.clouds[i], "label": i % 3}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("backend", ["torch", "device"])
def test_fast_forward_yields_the_same_batches_without_reading_the_skipped_ones(backend):
    data = SpyDataset(30)
    loader = make_loader(
        data, 4, backend=backend, augment=True, num_points=32, seed=3, drop_last=True, device="cpu", num_workers=0
    )
    loader.set_epoch(1)
    full = list(loader)
    assert len(full) == 7
    data.reads = 0
    loader.set_epoch(1, first_batch=5)
    tail = list(loader)
    assert len(tail) == 2 and all(_same(a, b) for a, b in zip(tail, full[5:]))
    if backend == "torch":  # reads item by item; the device backend read everything once, up front
        assert data.reads == 2 * 4
    assert len(list(loader)) == 7  # the next epoch starts at its first batch again
    with pytest.raises(ValueError, match="first_batch"):
        loader.set_epoch(1, first_batch=8)
