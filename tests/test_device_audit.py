"""Commands on a device the host cannot read directly (tests/device_tensors.py): a host read of a batch or of a
model output that skips `.cpu()` fails here as it crashes on CUDA (crossjepa embed did, on batch["index"])."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from device_tensors import DeviceMoves

from crossjepa.cli import main
from crossjepa.models import build
from crossjepa.ops import ReferenceFallbackWarning
from crossjepa.train.checkpoint import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(build("tiny"), tmp_path_factory.mktemp("ckpt") / "model.safetensors")


def run(argv) -> None:
    with DeviceMoves(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceFallbackWarning)
        assert main(["-q", "--debug", *argv, "--device", "cpu"]) == 0


def test_moved_tensors_are_read_back_only_through_cpu():
    with DeviceMoves():
        moved = (torch.arange(4).to("cpu") * 2)[1:]
        with pytest.raises(TypeError, match="Tensor.cpu"):
            moved.numpy()
        with pytest.raises(TypeError, match="Tensor.cpu"):
            np.asarray(moved)
        assert moved.cpu().numpy().tolist() == [2, 4, 6]


def test_embed(checkpoint, tmp_path):
    run(
        [
            "embed",
            "--data",
            "synthetic:5",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "f.npy"),
            "--batch-size",
            "2",
        ]
    )
    assert np.load(tmp_path / "f.npy").shape == (5, 2 * build("tiny").config.encoder.width)


def test_probe(checkpoint, tmp_path):
    out = tmp_path / "p.json"
    run(
        [
            "probe",
            "--data",
            "synthetic:24",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--seeds",
            "1",
            "--folds",
            "2",
        ]
    )
    assert 0 <= json.loads(out.read_text())["accuracy"]["mean"] <= 1


def test_finetune(checkpoint, tmp_path):
    out = tmp_path / "ft"
    run(
        ["finetune", "--data", "synthetic:120", "--checkpoint", str(checkpoint), "--out", str(out), "--seeds", "1"]
        + ["--epochs", "1", "--batch-size", "16", "--num-workers", "0"]
    )
    assert 0 <= json.loads((out / "report.json").read_text())["accuracy"]["mean"] <= 1
