"""The offline demo end to end at a small size: report.json per the contract, the view grid and the loss curve."""

from __future__ import annotations

import json

from crossjepa.demo import run_demo

PNG = b"\x89PNG\r\n\x1a\n"


def test_demo_writes_report_grid_and_curve(tmp_path, one_thread):
    run_demo(tmp_path, num_objects=60, steps=2, device="cpu", progress=False, seeds=2)
    report = json.loads((tmp_path / "report.json").read_text())
    for name in ("pretrained", "random_init"):
        result = report["probe"][name]
        assert 0.0 <= result["mean"] <= 1.0 and result["std"] >= 0.0 and len(result["per_seed"]) == 2
    assert "train split only" in report["protocol"]
    assert report["teacher"]["weights"] == "random-init"
    for name in ("view_grid.png", "pretrain/loss_curve.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    assert (tmp_path / "pretrain" / "model.safetensors").is_file()
